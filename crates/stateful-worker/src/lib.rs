//! stateful-worker: keyed state in CSV append logs (being built).
