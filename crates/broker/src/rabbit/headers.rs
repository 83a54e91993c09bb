//! Translation between our string headers and AMQP field tables, including
//! what RabbitMQ itself adds (`x-delivery-count`, `x-death`).

use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::{DEATH_COUNT_HEADER, DEATH_REASON_HEADER, Queue, REASON_HEADER};

/// Our headers as AMQP long strings.
pub(crate) fn to_table(headers: &[(String, String)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        table.insert(
            key.as_str().into(),
            AMQPValue::LongString(LongString::from(value.as_bytes())),
        );
    }
    table
}

/// Headers of a delivery from `queue` as strings: strings, numbers and
/// booleans as they are; from RabbitMQ's `x-death` list the latest entry's
/// reason and count; on the dead-letter queue an `x-reason` from that
/// reason when the publisher set none. Other structured values are skipped.
pub(crate) fn from_table(table: Option<&FieldTable>, queue: Queue) -> Vec<(String, String)> {
    let Some(table) = table else {
        return Vec::new();
    };
    let mut headers: Vec<(String, String)> = table
        .inner()
        .iter()
        .filter_map(|(key, value)| scalar(value).map(|v| (key.to_string(), v)))
        .collect();
    if let Some(AMQPValue::FieldArray(deaths)) = table.inner().get("x-death")
        && let Some(AMQPValue::FieldTable(latest)) = deaths.as_slice().first()
    {
        let latest = latest.inner();
        if let Some(reason) = latest.get("reason").and_then(scalar) {
            if queue == Queue::DeadLetter && !table.contains_key(REASON_HEADER) {
                headers.push((REASON_HEADER.to_owned(), reason.clone()));
            }
            headers.push((DEATH_REASON_HEADER.to_owned(), reason));
        }
        if let Some(count) = latest.get("count").and_then(scalar) {
            headers.push((DEATH_COUNT_HEADER.to_owned(), count));
        }
    }
    headers.sort();
    headers
}

fn scalar(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldArray;

    #[test]
    fn strings_round_trip_sorted() {
        let headers = vec![
            ("x-reason".to_string(), "bad json: ü".to_string()),
            ("a".to_string(), String::new()),
        ];
        let table = to_table(&headers);
        assert_eq!(
            from_table(Some(&table), Queue::Work),
            vec![
                ("a".to_string(), String::new()),
                ("x-reason".to_string(), "bad json: ü".to_string()),
            ]
        );
    }

    #[test]
    fn numbers_become_strings_and_x_death_is_summarised() {
        let mut death = FieldTable::default();
        death.insert("reason".into(), AMQPValue::LongString("rejected".into()));
        death.insert("count".into(), AMQPValue::LongLongInt(2));
        death.insert("queue".into(), AMQPValue::LongString("p.work".into()));
        let mut older = FieldTable::default();
        older.insert("reason".into(), AMQPValue::LongString("expired".into()));
        let mut table = FieldTable::default();
        table.insert("x-delivery-count".into(), AMQPValue::LongInt(3));
        table.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::FieldTable(death),
                AMQPValue::FieldTable(older),
            ])),
        );

        let on_dlq = from_table(Some(&table), Queue::DeadLetter);
        let get = |headers: &[(String, String)], key: &str| {
            headers
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(&on_dlq, "x-delivery-count").as_deref(), Some("3"));
        assert_eq!(
            get(&on_dlq, DEATH_REASON_HEADER).as_deref(),
            Some("rejected")
        );
        assert_eq!(get(&on_dlq, DEATH_COUNT_HEADER).as_deref(), Some("2"));
        assert_eq!(get(&on_dlq, REASON_HEADER).as_deref(), Some("rejected"));
        assert_eq!(get(&on_dlq, "x-death"), None);

        // Off the dead-letter queue (e.g. back on work after a retry) a death
        // is information, not a reason to reject.
        let on_work = from_table(Some(&table), Queue::Work);
        assert_eq!(get(&on_work, REASON_HEADER), None);

        // The publisher's own reason wins.
        table.insert(REASON_HEADER.into(), AMQPValue::LongString("bad".into()));
        let on_dlq = from_table(Some(&table), Queue::DeadLetter);
        assert_eq!(get(&on_dlq, REASON_HEADER).as_deref(), Some("bad"));
    }
}
