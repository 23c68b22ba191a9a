//! BatchSchedules in `run -f`: each runs once, as the run the controller would create for the
//! latest scheduled time at or before `--at` (default now), so a schedule can be tried without
//! a cluster or a wait.

use jiff::Timestamp;
use jiff::civil::DateTime;

use super::manifests::{Located, Manifests};
use crate::api::{Batch, BatchSchedule, BatchSweep};
use crate::schedule::{self, RunSpec, Timing};

/// Adds the run of every schedule to the Batches and sweeps to run; what each became, to say,
/// or every problem (naming the schedule's file and field).
pub fn expand(manifests: &mut Manifests, at: Option<&str>, now: Timestamp) -> Result<Vec<String>, Vec<String>> {
    let mut said = Vec::new();
    let mut problems = Vec::new();
    for ((ns, name), located) in std::mem::take(&mut manifests.schedules) {
        let origin = located.origin.clone();
        match run_of(&located.object, &name, at, now) {
            Ok((time, run_name, spec)) => {
                said.push(format!(
                    "BatchSchedule {ns}/{name}: running {run_name}, scheduled for {time}"
                ));
                let key = (ns.clone(), run_name.clone());
                let taken = manifests.batches.contains_key(&key) || manifests.sweeps.contains_key(&key);
                if taken {
                    problems.push(format!(
                        "{origin}: the run {run_name} of BatchSchedule {name} is defined in the files too"
                    ));
                    continue;
                }
                add_run(manifests, key, spec, origin);
            }
            Err(problem) => problems.push(format!("{origin}: BatchSchedule {ns}/{name}: {problem}")),
        }
    }
    if problems.is_empty() { Ok(said) } else { Err(problems) }
}

/// The scheduled time the run is for, its name and its spec.
fn run_of(
    schedule: &BatchSchedule,
    name: &str,
    at: Option<&str>,
    now: Timestamp,
) -> Result<(Timestamp, String, RunSpec), String> {
    let spec = &schedule.spec;
    let timing = Timing::parse(&spec.schedule, spec.time_zone.as_deref()).map_err(|e| e.to_string())?;
    let at = match at {
        Some(text) => parse_at(text, &timing)?,
        None => now,
    };
    let time = timing
        .latest_at_or_before(at)
        .ok_or_else(|| format!("spec.schedule {:?} has no time at or before {at}", spec.schedule))?;
    let run = schedule::run_spec(spec, &timing, time).map_err(|e| e.to_string())?;
    Ok((time, schedule::run_name(name, time), run))
}

/// `--at`: an RFC 3339 time (`2026-01-31T02:00:00Z`), or a date and time without an offset
/// (`2026-01-31T02:00`) read in the schedule's zone.
fn parse_at(text: &str, timing: &Timing) -> Result<Timestamp, String> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let civil: DateTime = text
        .parse()
        .map_err(|_| format!("--at {text:?} is not a time such as 2026-01-31T02:00 or 2026-01-31T02:00:00Z"))?;
    let zoned = civil
        .to_zoned(timing.zone())
        .map_err(|e| format!("--at {text:?} is not a time in the schedule's zone: {e}"))?;
    Ok(zoned.timestamp())
}

fn add_run(manifests: &mut Manifests, key: (String, String), run: RunSpec, origin: super::Origin) {
    let (ns, name) = key.clone();
    match run {
        RunSpec::Batch(spec) => {
            let mut batch = Batch::new(&name, *spec);
            batch.metadata.namespace = Some(ns);
            manifests.batches.insert(key, Located { object: batch, origin });
        }
        RunSpec::Sweep(spec) => {
            let mut sweep = BatchSweep::new(&name, *spec);
            sweep.metadata.namespace = Some(ns);
            manifests.sweeps.insert(key, Located { object: sweep, origin });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_without_an_offset_is_read_in_the_schedule_zone() {
        let tokyo = Timing::parse("@daily", Some("Asia/Tokyo")).unwrap();
        let t = parse_at("2026-02-01T08:30", &tokyo).unwrap();
        assert_eq!(t, "2026-01-31T23:30:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(parse_at("2026-01-31T23:30:00Z", &tokyo).unwrap(), t);
        assert!(parse_at("tomorrow", &tokyo).unwrap_err().contains("--at \"tomorrow\""));
    }
}
