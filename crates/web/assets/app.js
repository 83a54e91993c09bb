// batchline console: live regions. An element with data-live="URL" is
// replaced every two seconds by the HTML that URL returns (the same
// markup, rendered by the server); the refresh stops when the new markup
// has no data-live, i.e. when nothing on it can change any more. Ticked
// checkboxes survive the refresh. Without this script the pages work the
// same, they just do not update themselves.
(function () {
  "use strict";
  var PERIOD_MS = 2000;
  var RETRY_MS = 5000;

  function keepChecks(from, to) {
    from.querySelectorAll("input[type=checkbox]:checked").forEach(function (box) {
      var same = to.querySelector('input[type=checkbox][name="' + box.name + '"][value="' + box.value + '"]');
      if (same) same.checked = true;
    });
  }

  function refresh(el) {
    fetch(el.dataset.live, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        // Signed out meanwhile: the whole page goes to the login form.
        if (r.redirected) { window.location.reload(); return Promise.reject("signed out"); }
        return r.ok ? r.text() : Promise.reject(r.status);
      })
      .then(function (html) {
        var t = document.createElement("template");
        t.innerHTML = html.trim();
        var next = t.content.firstElementChild;
        if (!next) return;
        keepChecks(el, next);
        el.replaceWith(next);
        schedule(next, PERIOD_MS);
      })
      .catch(function () { schedule(el, RETRY_MS); });
  }

  function schedule(el, ms) {
    if (el.dataset.live) setTimeout(function () { refresh(el); }, ms);
  }

  document.querySelectorAll("[data-live]").forEach(function (el) { schedule(el, PERIOD_MS); });
})();
