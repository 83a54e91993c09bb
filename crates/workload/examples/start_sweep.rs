//! How the event's start (the phase of everyone's weekly schedule) changes
//! Spring League's outcome: `cargo run --release -p workload --example start_sweep [RUNS]`.

use workload::event::{TimeOfDay, Weekday};
use workload::{Event, Report, Workload, WorkloadSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs = std::env::args().nth(1).map_or(Ok(2000), |s| s.parse())?;
    for day in Weekday::ALL {
        for hour in [0, 12, 18] {
            let mut event = Event::spring_league();
            event.start.day = day;
            event.start.time = TimeOfDay::new(hour, 0).ok_or("bad hour")?;
            let w = Workload::new(&WorkloadSpec::Bingo { event })?;
            let (mut scratch, mut summary) = (w.scratch(), w.empty_summary());
            w.run_range(1, 0, runs, &mut scratch, &mut Vec::new(), &mut summary);
            let Report::Bingo(b) = w.report(&summary) else {
                return Err("not bingo".into());
            };
            let teams: Vec<String> = b
                .teams
                .iter()
                .map(|t| {
                    let (p, r) = (&t.points, t.win_rate * 100.0);
                    format!(
                        "{} win {r:5.1}% points {:6.1} (p50 {} p95 {})",
                        t.name, p.mean, p.p50, p.p95
                    )
                })
                .collect();
            println!("{day:?} {hour:02}:00  {}", teams.join(" | "));
        }
    }
    Ok(())
}
