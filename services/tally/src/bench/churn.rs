//! `--churn`: instances leave and join their consumer groups while the
//! throughput run's events flow, and the run still checks every invoice.
//!
//! Rating: at 10 % of the run's events rated, the oldest rating instance
//! is sent SIGTERM (it finishes its batch, commits and leaves); [`REJOIN`]
//! later a new one starts; at 50 % the oldest still running is SIGKILLed
//! (a crash: its partitions wait for the session timeout,
//! `TALLY_KAFKA_SESSION_TIMEOUT_MS`, 10 s by default); [`REJOIN`] later
//! another starts. Invoicing, when it has more than one instance, does the
//! same at 30 % and 70 %. Progress is the rating instances' own count
//! (their `/metrics`, read every [`EVERY`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::instances::{Departure, Instances, INVOICING, RATING};

/// How long after an instance left its successor starts.
pub(super) const REJOIN: Duration = Duration::from_secs(3);
/// How often the controller reads the instances' counts.
const EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    /// Once the rating instances counted this percent of the run's events.
    Rated(u64),
    /// This long after the service's previous step.
    After(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// The oldest instance of the service still running leaves.
    Leave(Departure),
    /// A new instance starts.
    Join,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Step {
    pub(super) service: &'static str,
    pub(super) when: When,
    pub(super) action: Action,
}

/// The steps of each service that churns, in order (one queue a service:
/// a step waits for the one before it).
pub(super) fn plan(rating: bool, invoicing: bool) -> Vec<Vec<Step>> {
    let steps = |service, first, second| {
        vec![
            Step {
                service,
                when: When::Rated(first),
                action: Action::Leave(Departure::Stopped),
            },
            Step {
                service,
                when: When::After(REJOIN),
                action: Action::Join,
            },
            Step {
                service,
                when: When::Rated(second),
                action: Action::Leave(Departure::Killed),
            },
            Step {
                service,
                when: When::After(REJOIN),
                action: Action::Join,
            },
        ]
    };
    let mut plan = Vec::new();
    if rating {
        plan.push(steps(RATING, 10, 50));
    }
    if invoicing {
        plan.push(steps(INVOICING, 30, 70));
    }
    plan
}

/// Whether a step is due: `rated` of the run's `events` counted so far,
/// `since` the service's previous step (or the run's start).
pub(super) fn due(when: When, rated: u64, events: u64, since: Duration) -> bool {
    match when {
        When::Rated(percent) => u128::from(rated) * 100 >= u128::from(percent) * u128::from(events),
        When::After(wait) => since >= wait,
    }
}

/// The instances, held by a task that carries out the plan while the run
/// goes on (and with no plan only holds them).
pub(super) struct Controller {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<(Instances, Vec<Step>)>>,
}

impl Controller {
    pub(super) fn spawn(
        instances: Instances,
        plan: Vec<Vec<Step>>,
        events: u64,
        started: Instant,
    ) -> Controller {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(instances, plan, events, started, stop.clone()));
        Controller { stop, task }
    }

    /// Ends the churn: the instances back, and the steps not taken.
    pub(super) async fn stop(self) -> anyhow::Result<(Instances, Vec<Step>)> {
        self.stop.cancel();
        self.task.await?
    }
}

async fn run(
    mut instances: Instances,
    plan: Vec<Vec<Step>>,
    events: u64,
    started: Instant,
    stop: CancellationToken,
) -> anyhow::Result<(Instances, Vec<Step>)> {
    if plan.is_empty() {
        stop.cancelled().await;
        return Ok((instances, Vec::new()));
    }
    let mut queues: Vec<VecDeque<Step>> = plan.into_iter().map(VecDeque::from).collect();
    let mut previous = vec![started; queues.len()];
    let at = || started.elapsed().as_secs_f64();
    loop {
        instances.scrape().await;
        let rated = instances.rated();
        for (queue, previous) in queues.iter_mut().zip(&mut previous) {
            while let Some(step) = queue.front().copied() {
                if !due(step.when, rated, events, previous.elapsed()) {
                    break;
                }
                match step.action {
                    Action::Leave(how) => {
                        if let Some(name) = instances.leave(step.service, how).await? {
                            println!(
                                "churn {:.1} s: {name} sent {} ({rated} of {events} events rated)",
                                at(),
                                how.signal()
                            );
                        }
                    }
                    Action::Join => {
                        let name = instances.join(step.service)?;
                        println!("churn {:.1} s: {name} started", at());
                    }
                }
                *previous = Instant::now();
                queue.pop_front();
            }
        }
        for name in instances.newly_assigned().await {
            println!("churn {:.1} s: {name} has partitions (ready)", at());
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
    Ok((instances, queues.into_iter().flatten().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rating_always_churns_and_invoicing_only_when_asked() {
        let both = plan(true, true);
        assert_eq!(both.len(), 2);
        let rating: Vec<(When, Action)> = both[0].iter().map(|s| (s.when, s.action)).collect();
        assert_eq!(
            rating,
            [
                (When::Rated(10), Action::Leave(Departure::Stopped)),
                (When::After(REJOIN), Action::Join),
                (When::Rated(50), Action::Leave(Departure::Killed)),
                (When::After(REJOIN), Action::Join),
            ]
        );
        assert!(both[0].iter().all(|s| s.service == RATING));
        assert!(both[1].iter().all(|s| s.service == INVOICING));
        assert_eq!(both[1][0].when, When::Rated(30));
        assert_eq!(both[1][2].when, When::Rated(70));
        let rating_only = plan(true, false);
        assert_eq!(rating_only.len(), 1);
        assert_eq!(rating_only[0][0].service, RATING);
        assert!(plan(false, false).is_empty());
    }

    #[test]
    fn a_step_is_due_at_its_share_of_the_events_or_after_its_wait() {
        let secs = Duration::from_secs;
        assert!(!due(When::Rated(10), 1_999, 20_000, secs(60)));
        assert!(due(When::Rated(10), 2_000, 20_000, secs(0)));
        assert!(due(When::Rated(50), 10_001, 20_000, secs(0)));
        // No overflow with a huge run.
        assert!(!due(When::Rated(50), u64::MAX / 2 - 1, u64::MAX, secs(0)));
        assert!(!due(When::After(REJOIN), u64::MAX, 1, secs(2)));
        assert!(due(When::After(REJOIN), 0, 1, secs(3)));
    }
}
