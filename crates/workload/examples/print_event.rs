//! Prints the built-in Spring League event as JSON, a starting point for
//! `batchline submit --event FILE`:
//! `cargo run -p workload --example print_event > crates/workload/events/spring-league.json`.

fn main() -> Result<(), serde_json::Error> {
    println!(
        "{}",
        serde_json::to_string_pretty(&workload::Event::spring_league())?
    );
    Ok(())
}
