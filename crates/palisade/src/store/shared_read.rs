//! One database read shared by every caller that asked for it while it was pending, and
//! never by a caller that asked after it began: each answer comes from a statement that
//! started after its caller asked, so whatever any instance committed before the ask is
//! seen — the guarantee of reading per request — at the cost of one statement per burst.
//!
//! Callers arriving while a read is in flight wait for the next one, which starts the moment
//! the current one ends; under load one statement answers everyone who arrived during the
//! previous one. The read runs in its own task, so a caller that goes away (a client that
//! hung up) never strands the others.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::StoreError;

/// The longest one shared read may take before its waiters are told the database is
/// unavailable (503) — the pool's acquire timeout.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

type Read<T> =
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>> + Send + Sync;

pub struct SharedRead<T> {
    read: Box<Read<T>>,
    rounds: Mutex<Rounds>,
    finished: watch::Sender<Finished<T>>,
}

/// Reads are numbered in the order they start.
struct Rounds {
    started: u64,
    /// The newest round some caller waits for.
    wanted: u64,
    reading: bool,
}

#[derive(Clone)]
struct Finished<T> {
    round: u64,
    value: Result<T, Failure>,
}

/// A failed read, told to each of its waiters with the same meaning (503, 507 or 500).
#[derive(Clone, Debug)]
struct Failure {
    kind: FailureKind,
    message: Arc<str>,
}

#[derive(Clone, Copy, Debug)]
enum FailureKind {
    Unavailable,
    Full,
    Other,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SharedFailure(Arc<str>);

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        let kind = match error {
            StoreError::Unavailable(_) => FailureKind::Unavailable,
            StoreError::Full(_) => FailureKind::Full,
            StoreError::Other(_) => FailureKind::Other,
        };
        Self {
            kind,
            message: error.to_string().into(),
        }
    }
}

impl Failure {
    fn into_error(self) -> StoreError {
        let source = Box::new(SharedFailure(self.message));
        match self.kind {
            FailureKind::Unavailable => StoreError::Unavailable(source),
            FailureKind::Full => StoreError::Full(source),
            FailureKind::Other => StoreError::Other(source),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SharedRead<T> {
    pub fn new<F, Fut>(read: F) -> Arc<Self>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (finished, _) = watch::channel(Finished {
            round: 0,
            value: Err(Failure {
                kind: FailureKind::Other,
                message: "no read yet".into(),
            }),
        });
        Arc::new(Self {
            read: Box::new(move || Box::pin(read())),
            rounds: Mutex::new(Rounds {
                started: 0,
                wanted: 0,
                reading: false,
            }),
            finished,
        })
    }

    /// The value as read by a statement that began after this call.
    pub async fn get(self: &Arc<Self>) -> Result<T, StoreError> {
        let mut finished = self.finished.subscribe();
        let needed = {
            let mut rounds = self.rounds.lock().expect("shared read lock");
            let needed = rounds.started + 1;
            rounds.wanted = rounds.wanted.max(needed);
            if !rounds.reading {
                rounds.reading = true;
                tokio::spawn(Arc::clone(self).read_while_wanted());
            }
            needed
        };
        let outcome = finished
            .wait_for(|done| done.round >= needed)
            .await
            .map(|done| done.value.clone());
        match outcome {
            Ok(value) => value.map_err(Failure::into_error),
            // The sender lives as long as `self`, which this call borrows.
            Err(_) => unreachable!("shared read dropped while borrowed"),
        }
    }

    async fn read_while_wanted(self: Arc<Self>) {
        let mut guard = Reading {
            shared: &self,
            round: 0,
            answered: false,
        };
        loop {
            guard.round = {
                let mut rounds = self.rounds.lock().expect("shared read lock");
                rounds.started += 1;
                rounds.started
            };
            // A read that hangs (a half-open connection) must not hold every waiter.
            let value = match tokio::time::timeout(READ_TIMEOUT, (self.read)()).await {
                Ok(value) => value.map_err(Failure::from),
                Err(_) => Err(Failure {
                    kind: FailureKind::Unavailable,
                    message: "the shared read timed out".into(),
                }),
            };
            self.finished.send_replace(Finished {
                round: guard.round,
                value,
            });
            let mut rounds = self.rounds.lock().expect("shared read lock");
            if rounds.wanted <= guard.round {
                rounds.reading = false;
                guard.answered = true;
                return;
            }
        }
    }
}

/// Should the reading task end early (a panic, the runtime shutting down), its waiters are
/// answered with a failure and the next caller starts a new read.
struct Reading<'a, T> {
    shared: &'a SharedRead<T>,
    round: u64,
    answered: bool,
}

impl<T> Drop for Reading<'_, T> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let Ok(mut rounds) = self.shared.rounds.lock() else {
            return;
        };
        rounds.reading = false;
        // Everyone waiting — for this round or the next — is answered; the next caller
        // starts afresh.
        rounds.started = rounds.started.max(rounds.wanted);
        let round = rounds.started;
        drop(rounds);
        self.shared.finished.send_replace(Finished {
            round,
            value: Err(Failure {
                kind: FailureKind::Unavailable,
                message: format!("read {} ended before it answered", self.round).into(),
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::sync::{mpsc, oneshot};

    use super::*;

    type Reply = oneshot::Sender<Result<u64, StoreError>>;

    /// A read the test answers by hand: each started read sends its reply slot.
    fn manual() -> (Arc<SharedRead<u64>>, mpsc::UnboundedReceiver<Reply>) {
        let (started, reads) = mpsc::unbounded_channel();
        let shared = SharedRead::new(move || {
            let (reply, answer) = oneshot::channel();
            started.send(reply).expect("test holds the receiver");
            async move { answer.await.expect("test answers every read") }
        });
        (shared, reads)
    }

    /// Yields until `callers` calls are waiting for an answer.
    async fn until_waiting<T: Clone + Send + Sync + 'static>(
        shared: &SharedRead<T>,
        callers: usize,
    ) {
        while shared.finished.receiver_count() < callers {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_caller_arriving_during_a_read_waits_for_one_that_starts_after_it() {
        let (shared, mut reads) = manual();
        let first = tokio::spawn({
            let shared = shared.clone();
            async move { shared.get().await.unwrap() }
        });
        let in_flight = reads.recv().await.unwrap();
        let late = tokio::spawn({
            let shared = shared.clone();
            async move { shared.get().await.unwrap() }
        });
        until_waiting(&shared, 2).await;
        // The read that began before `late` asked answers only `first`.
        in_flight.send(Ok(1)).unwrap();
        assert_eq!(first.await.unwrap(), 1);
        let next = reads.recv().await.unwrap();
        assert!(!late.is_finished());
        next.send(Ok(2)).unwrap();
        assert_eq!(late.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn callers_waiting_together_share_one_read() {
        let (shared, mut reads) = manual();
        let first = tokio::spawn({
            let shared = shared.clone();
            async move { shared.get().await.unwrap() }
        });
        let in_flight = reads.recv().await.unwrap();
        let waiting: Vec<_> = (0..20)
            .map(|_| {
                let shared = shared.clone();
                tokio::spawn(async move { shared.get().await.unwrap() })
            })
            .collect();
        until_waiting(&shared, 21).await;
        in_flight.send(Ok(7)).unwrap();
        assert_eq!(first.await.unwrap(), 7);
        reads.recv().await.unwrap().send(Ok(8)).unwrap();
        for caller in waiting {
            assert_eq!(caller.await.unwrap(), 8);
        }
        assert!(reads.try_recv().is_err(), "two reads answered 21 callers");
    }

    #[tokio::test]
    async fn a_failed_read_fails_its_waiters_with_its_meaning_and_the_next_caller_reads_again() {
        let (shared, mut reads) = manual();
        let caller = tokio::spawn({
            let shared = shared.clone();
            async move { shared.get().await }
        });
        reads
            .recv()
            .await
            .unwrap()
            .send(Err(StoreError::Unavailable("gone".into())))
            .unwrap();
        assert!(matches!(
            caller.await.unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        let again = tokio::spawn({
            let shared = shared.clone();
            async move { shared.get().await.unwrap() }
        });
        reads.recv().await.unwrap().send(Ok(3)).unwrap();
        assert_eq!(again.await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_read_that_dies_answers_its_caller_and_those_waiting_for_the_next() {
        let (shared, mut reads) = manual();
        let first = tokio::spawn({
            let shared = shared.clone();
            async move { shared.get().await }
        });
        let in_flight = reads.recv().await.unwrap();
        let late = tokio::spawn({
            let shared = shared.clone();
            async move { shared.get().await }
        });
        until_waiting(&shared, 2).await;
        // The read's task panics: nobody answers it.
        drop(in_flight);
        assert!(matches!(
            first.await.unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            late.await.unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        // And the next caller reads again.
        let again = tokio::spawn({
            let shared = shared.clone();
            async move { shared.get().await.unwrap() }
        });
        reads.recv().await.unwrap().send(Ok(5)).unwrap();
        assert_eq!(again.await.unwrap(), 5);
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_leaves_the_read_to_the_others() {
        let reads = Arc::new(AtomicU64::new(0));
        let (release, hold) = tokio::sync::watch::channel(false);
        let shared = SharedRead::new({
            let reads = reads.clone();
            move || {
                let round = reads.fetch_add(1, Ordering::SeqCst) + 1;
                let mut hold = hold.clone();
                async move {
                    hold.wait_for(|released| *released).await.unwrap();
                    Ok(round)
                }
            }
        });
        let impatient = tokio::spawn({
            let shared = shared.clone();
            async move { shared.get().await }
        });
        until_waiting(&shared, 1).await;
        let patient = tokio::spawn({
            let shared = shared.clone();
            async move { shared.get().await.unwrap() }
        });
        until_waiting(&shared, 2).await;
        impatient.abort();
        let _ = impatient.await;
        release.send(true).unwrap();
        assert!(patient.await.unwrap() >= 1);
    }
}
