//! `${date}`, `${time}` and `${datetime}` in a template's input and output names and URLs,
//! replaced by a run's scheduled time in the schedule's zone.

use jiff::Zoned;

use crate::api::{BatchInput, BatchOutput, BatchSpec, BatchSweepSpec, InvalidField};

/// The placeholders a template may hold, for error messages.
const KNOWN: &str = "${date}, ${time} or ${datetime}";

/// A run's scheduled time, written the three ways the placeholders take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// `2026-01-31`
    pub date: String,
    /// `0200`
    pub time: String,
    /// `20260131T020000Z` (UTC) or `20260131T020000+0100`: RFC 3339 in basic form.
    pub datetime: String,
}

impl Stamp {
    pub fn of(t: &Zoned) -> Stamp {
        let offset = match t.offset().seconds() {
            0 => "Z".to_string(),
            _ => t.strftime("%z").to_string(),
        };
        Stamp {
            date: t.strftime("%Y-%m-%d").to_string(),
            time: t.strftime("%H%M").to_string(),
            datetime: format!("{}{offset}", t.strftime("%Y%m%dT%H%M%S")),
        }
    }

    /// `text` with every placeholder replaced; an unknown `${...}` is an error.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("{text:?} has an unclosed \"${{\" (use {KNOWN})"))?;
            out.push_str(match &after[..end] {
                "date" => &self.date,
                "time" => &self.time,
                "datetime" => &self.datetime,
                other => {
                    return Err(format!(
                        "{text:?} has an unknown placeholder ${{{other}}} (use {KNOWN})"
                    ));
                }
            });
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// A field of a template that may hold placeholders: its path, and where it is in a spec.
type Slot<T> = (&'static str, fn(&mut T) -> Option<&mut String>);

const BATCH_SLOTS: [Slot<BatchSpec>; 6] = [
    ("spec.batchTemplate.input.configMap.name", |s| {
        input_slot(&mut s.input, 0)
    }),
    ("spec.batchTemplate.input.secret.name", |s| input_slot(&mut s.input, 1)),
    ("spec.batchTemplate.input.objectStore.url", |s| {
        input_slot(&mut s.input, 2)
    }),
    ("spec.batchTemplate.output.secret.name", |s| {
        output_slot(s.output.as_mut(), 0)
    }),
    ("spec.batchTemplate.output.objectStore.url", |s| {
        output_slot(s.output.as_mut(), 1)
    }),
    ("spec.batchTemplate.output.pvc.path", |s| {
        output_slot(s.output.as_mut(), 2)
    }),
];

const SWEEP_SLOTS: [Slot<BatchSweepSpec>; 6] = [
    ("spec.sweepTemplate.input.configMap.name", |s| {
        input_slot(&mut s.input, 0)
    }),
    ("spec.sweepTemplate.input.secret.name", |s| input_slot(&mut s.input, 1)),
    ("spec.sweepTemplate.input.objectStore.url", |s| {
        input_slot(&mut s.input, 2)
    }),
    ("spec.sweepTemplate.template.output.secret.name", |s| {
        output_slot(s.template.output.as_mut(), 0)
    }),
    ("spec.sweepTemplate.template.output.objectStore.url", |s| {
        output_slot(s.template.output.as_mut(), 1)
    }),
    ("spec.sweepTemplate.template.output.pvc.path", |s| {
        output_slot(s.template.output.as_mut(), 2)
    }),
];

fn input_slot(input: &mut BatchInput, which: usize) -> Option<&mut String> {
    match which {
        0 => input.config_map.as_mut().map(|r| &mut r.name),
        1 => input.secret.as_mut().map(|r| &mut r.name),
        _ => input.object_store.as_mut().map(|r| &mut r.url),
    }
}

fn output_slot(output: Option<&mut BatchOutput>, which: usize) -> Option<&mut String> {
    let output = output?;
    match which {
        0 => output.secret.as_mut().map(|r| &mut r.name),
        1 => output.object_store.as_mut().map(|r| &mut r.url),
        _ => output.pvc.as_mut().map(|p| &mut p.path),
    }
}

fn expand_slots<T: Clone>(template: &T, slots: &[Slot<T>], stamp: &Stamp) -> Result<T, InvalidField> {
    let mut spec = template.clone();
    for (field, slot) in slots {
        if let Some(text) = slot(&mut spec) {
            *text = stamp
                .expand(text)
                .map_err(|problem| InvalidField::new(field, problem))?;
        }
    }
    Ok(spec)
}

/// The Batch spec of a run: the template with its placeholders replaced.
pub fn batch_spec(template: &BatchSpec, stamp: &Stamp) -> Result<BatchSpec, InvalidField> {
    expand_slots(template, &BATCH_SLOTS, stamp)
}

/// The BatchSweep spec of a run: the template with its placeholders replaced.
pub fn sweep_spec(template: &BatchSweepSpec, stamp: &Stamp) -> Result<BatchSweepSpec, InvalidField> {
    expand_slots(template, &SWEEP_SLOTS, stamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn stamp(utc: &str, zone: &str) -> Stamp {
        let t: jiff::Timestamp = utc.parse().unwrap();
        Stamp::of(&t.to_zoned(TimeZone::get(zone).unwrap()))
    }

    #[test]
    fn placeholders_resolve_in_the_zone_across_a_date_boundary() {
        // 23:30 UTC on the 31st is already 08:30 on 1 February in Tokyo.
        let tokyo = stamp("2026-01-31T23:30:00Z", "Asia/Tokyo");
        assert_eq!(
            tokyo.expand("s3://in/${date}/t-${time}.jsonl").unwrap(),
            "s3://in/2026-02-01/t-0830.jsonl"
        );
        assert_eq!(tokyo.datetime, "20260201T083000+0900");
        let utc = stamp("2026-01-31T23:30:00Z", "UTC");
        assert_eq!(utc.expand("${date}").unwrap(), "2026-01-31");
        assert_eq!(utc.datetime, "20260131T233000Z");
        let la = stamp("2026-01-01T02:00:00Z", "America/Los_Angeles");
        assert_eq!(la.expand("tickets-${date}").unwrap(), "tickets-2025-12-31");
    }

    #[test]
    fn text_without_placeholders_is_kept_and_unknown_ones_are_refused() {
        let s = stamp("2026-01-31T02:00:00Z", "UTC");
        assert_eq!(s.expand("$HOME/a$b{c}").unwrap(), "$HOME/a$b{c}");
        let e = s.expand("in-${day}").unwrap_err();
        assert!(e.contains("unknown placeholder ${day}"), "{e}");
        assert!(s.expand("in-${date").unwrap_err().contains("unclosed"));
    }

    #[test]
    fn a_template_error_names_its_field() {
        let template: BatchSpec = serde_json::from_value(serde_json::json!({
            "gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
            "input": {"configMap": {"name": "tickets-${date}", "key": "batch.jsonl"}},
            "output": {"objectStore": {"url": "s3://out/${week}/"}}}))
        .unwrap();
        let e = batch_spec(&template, &stamp("2026-01-31T02:00:00Z", "UTC")).unwrap_err();
        assert_eq!(e.field, "spec.batchTemplate.output.objectStore.url");
        let mut fixed = template.clone();
        fixed.output.as_mut().unwrap().object_store.as_mut().unwrap().url = "s3://out/${date}/".into();
        let spec = batch_spec(&fixed, &stamp("2026-01-31T02:00:00Z", "UTC")).unwrap();
        assert_eq!(spec.input.config_map.unwrap().name, "tickets-2026-01-31");
        assert_eq!(spec.output.unwrap().object_store.unwrap().url, "s3://out/2026-01-31/");
    }
}
