//! The jobs in memory: the queue (one job runs at a time; the CPU is the bottleneck), each job's
//! losses so far, and the channels that push its progress to every page watching it. The
//! worker thread takes jobs from here; request handlers add, cancel and watch them.
//!
//! Every change is published while the lock is held, and a watcher subscribes and takes its
//! snapshot under the same lock, so a watcher sees each event exactly once after its snapshot.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::broadcast;

use impasto::transfer::LossRecord;

use crate::id::Id;
use crate::store::{JobFile, JobRecord, Status, Store};

/// How many events a slow watcher may fall behind before it is sent a fresh snapshot instead.
const EVENT_BUFFER: usize = 4096;

/// One iteration's losses as the page charts them.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct LossPoint {
    /// Over all scales.
    pub iteration: usize,
    /// Which scale of a coarse-to-fine run.
    pub scale: usize,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Unweighted.
    pub content: f64,
    /// Unweighted.
    pub style: f64,
    /// Unweighted.
    pub tv: f64,
    /// Weighted sum.
    pub total: f64,
}

impl From<&LossRecord> for LossPoint {
    fn from(r: &LossRecord) -> Self {
        LossPoint {
            iteration: r.iteration,
            scale: r.scale,
            elapsed_s: r.elapsed_s,
            content: r.parts.content,
            style: r.parts.style,
            tv: r.parts.tv,
            total: r.parts.total,
        }
    }
}

/// What a watcher is sent (as JSON, `type` naming the kind).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// The whole state: first on every connection, and again after a watcher fell behind.
    Snapshot {
        /// The job.
        job: Box<JobRecord>,
        /// Every iteration so far.
        losses: Vec<LossPoint>,
    },
    /// One more iteration.
    Progress {
        /// Its losses.
        loss: LossPoint,
        /// Iterations per second so far.
        it_s: f64,
        /// Seconds left at that pace.
        eta_s: f64,
        /// Iterations over all scales.
        total_iterations: usize,
    },
    /// A new preview image (`preview.png?v=version`).
    Preview {
        /// The image's version.
        version: u64,
        /// The iteration it shows.
        iteration: usize,
    },
    /// The instant stylisation is ready (`instant.png`).
    Instant,
    /// The job's status changed (the last event when it is final).
    Status {
        /// The job.
        job: Box<JobRecord>,
    },
}

struct Entry {
    record: JobRecord,
    losses: Vec<LossPoint>,
    events: broadcast::Sender<Event>,
    cancel: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    jobs: HashMap<Id, Entry>,
    queue: VecDeque<Id>,
    running: Option<Id>,
    shutdown: bool,
}

/// The jobs, shared by the handlers and the worker.
pub struct Hub {
    state: Mutex<State>,
    wake: Condvar,
    store: Store,
    /// Every status change of any job, for the page's queue and gallery.
    list: broadcast::Sender<JobRecord>,
}

/// What the worker needs to run one job.
pub struct Claimed {
    /// The job as it starts.
    pub record: JobRecord,
    /// Set when someone cancels it.
    pub cancel: Arc<AtomicBool>,
}

/// What watching a job gives: its state now, and what comes after.
pub struct Watch {
    /// The snapshot event.
    pub snapshot: Event,
    /// Whether the job was already final (nothing more will come).
    pub finished: bool,
    /// Later events.
    pub events: broadcast::Receiver<Event>,
}

impl Hub {
    /// The jobs found in the store; queued ones queue again, in order. Jobs the store shows
    /// running must be settled (as interrupted) before this.
    pub fn new(store: Store, jobs: Vec<JobRecord>) -> Hub {
        let mut state = State::default();
        for record in jobs {
            if record.status == Status::Queued {
                state.queue.push_back(record.id);
            }
            let losses = read_losses(&store.job_file(record.id, JobFile::Losses));
            state.jobs.insert(record.id, entry(record, losses));
        }
        let hub = Hub {
            state: Mutex::new(state),
            wake: Condvar::new(),
            store,
            list: broadcast::channel(EVENT_BUFFER).0,
        };
        let mut state = hub.lock();
        hub.renumber(&mut state);
        drop(state);
        hub
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every change is one assignment),
        // so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Adds a job at the end of the queue.
    pub fn submit(&self, record: JobRecord) -> std::io::Result<JobRecord> {
        let mut state = self.lock();
        let id = record.id;
        self.store.save_job(&record)?;
        state.jobs.insert(id, entry(record, Vec::new()));
        state.queue.push_back(id);
        self.renumber(&mut state);
        self.wake.notify_all();
        Ok(state.jobs[&id].record.clone())
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<JobRecord> {
        let state = self.lock();
        let mut all: Vec<JobRecord> = state.jobs.values().map(|e| e.record.clone()).collect();
        all.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        all
    }

    /// One job.
    pub fn get(&self, id: Id) -> Option<JobRecord> {
        self.lock().jobs.get(&id).map(|e| e.record.clone())
    }

    /// A job's losses so far (from memory, else from its CSV file).
    pub fn losses(&self, id: Id) -> Option<Vec<LossPoint>> {
        self.lock().jobs.get(&id).map(|e| e.losses.clone())
    }

    /// Cancels a queued job at once, or asks the running one to stop after its iteration (its
    /// best image is kept). Final jobs are left as they are. `None`: no such job.
    pub fn cancel(&self, id: Id) -> Option<JobRecord> {
        let mut state = self.lock();
        let (status, cancel) = {
            let entry = state.jobs.get(&id)?;
            (entry.record.status, entry.cancel.clone())
        };
        match status {
            Status::Queued => {
                state.queue.retain(|q| *q != id);
                self.update(&mut state, id, |r| {
                    r.status = Status::Cancelled;
                    r.position = None;
                    r.finished = Some(crate::store::now());
                });
                self.renumber(&mut state);
            }
            Status::Running => cancel.store(true, Ordering::SeqCst),
            _ => {}
        }
        state.jobs.get(&id).map(|e| e.record.clone())
    }

    /// Subscribes to a job's events. `None`: no such job.
    pub fn watch(&self, id: Id) -> Option<Watch> {
        let state = self.lock();
        let entry = state.jobs.get(&id)?;
        Some(Watch {
            events: entry.events.subscribe(),
            finished: entry.record.status.is_final(),
            snapshot: Event::Snapshot {
                job: Box::new(entry.record.clone()),
                losses: entry.losses.clone(),
            },
        })
    }

    /// A fresh snapshot, for a watcher that fell behind.
    pub fn snapshot(&self, id: Id) -> Option<(Event, bool)> {
        let state = self.lock();
        let entry = state.jobs.get(&id)?;
        Some((
            Event::Snapshot {
                job: Box::new(entry.record.clone()),
                losses: entry.losses.clone(),
            },
            entry.record.status.is_final(),
        ))
    }

    /// How many are watching a job now.
    pub fn watchers(&self, id: Id) -> usize {
        self.lock()
            .jobs
            .get(&id)
            .map_or(0, |e| e.events.receiver_count())
    }

    /// Status changes of all jobs.
    pub fn subscribe_list(&self) -> broadcast::Receiver<JobRecord> {
        self.list.subscribe()
    }

    /// For the worker: waits for the next job and marks it running; `None` once shut down.
    pub fn claim(&self) -> Option<Claimed> {
        let mut state = self.lock();
        loop {
            if state.shutdown {
                return None;
            }
            if let Some(id) = state.queue.pop_front() {
                state.running = Some(id);
                self.update(&mut state, id, |r| {
                    r.status = Status::Running;
                    r.started = Some(crate::store::now());
                });
                self.renumber(&mut state);
                let entry = &state.jobs[&id];
                return Some(Claimed {
                    record: entry.record.clone(),
                    cancel: entry.cancel.clone(),
                });
            }
            state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Stops the worker: it takes no more jobs, and the running one stops after its iteration.
    pub fn shut_down(&self) {
        let mut state = self.lock();
        state.shutdown = true;
        if let Some(id) = state.running {
            if let Some(e) = state.jobs.get(&id) {
                e.cancel.store(true, Ordering::SeqCst);
            }
        }
        self.wake.notify_all();
    }

    /// Whether the server is stopping.
    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutdown
    }

    /// For the worker: one more iteration.
    pub fn progress(&self, id: Id, record: &LossRecord, total_iterations: usize) {
        let mut state = self.lock();
        let Some(entry) = state.jobs.get_mut(&id) else {
            return;
        };
        let loss = LossPoint::from(record);
        entry.losses.push(loss);
        let r = &mut entry.record;
        r.iterations_done = record.iteration;
        r.elapsed_s = record.elapsed_s;
        if r.best_loss.is_none_or(|b| loss.total < b) && loss.total.is_finite() {
            r.best_loss = Some(loss.total);
            r.best_iteration = Some(record.iteration);
        }
        let it_s = if record.elapsed_s > 0.0 {
            record.iteration as f64 / record.elapsed_s
        } else {
            0.0
        };
        let eta_s = if it_s > 0.0 {
            total_iterations.saturating_sub(record.iteration) as f64 / it_s
        } else {
            0.0
        };
        let _ = entry.events.send(Event::Progress {
            loss,
            it_s,
            eta_s,
            total_iterations,
        });
    }

    /// For the worker: a new preview image was written; its record is saved too.
    pub fn preview(&self, id: Id, iteration: usize) {
        let mut state = self.lock();
        let Some(entry) = state.jobs.get_mut(&id) else {
            return;
        };
        entry.record.preview_version += 1;
        let version = entry.record.preview_version;
        if let Err(e) = self.store.save_job(&entry.record) {
            tracing::warn!("saving job {id}: {e}");
        }
        let _ = entry.events.send(Event::Preview { version, iteration });
    }

    /// For the worker: the instant stylisation was written.
    pub fn instant(&self, id: Id) {
        let mut state = self.lock();
        if let Some(entry) = state.jobs.get_mut(&id) {
            entry.record.has_instant = true;
            let _ = entry.events.send(Event::Instant);
        }
    }

    /// For the worker: the job ended. `change` sets its final status and results.
    pub fn finish(&self, id: Id, change: impl FnOnce(&mut JobRecord)) {
        let mut state = self.lock();
        if state.running == Some(id) {
            state.running = None;
        }
        self.update(&mut state, id, |r| {
            change(r);
            r.position = None;
            r.finished = Some(crate::store::now());
        });
        self.renumber(&mut state);
    }

    /// Changes a job's record, saves it and tells its watchers and the list.
    fn update(&self, state: &mut State, id: Id, change: impl FnOnce(&mut JobRecord)) {
        let Some(entry) = state.jobs.get_mut(&id) else {
            return;
        };
        change(&mut entry.record);
        if let Err(e) = self.store.save_job(&entry.record) {
            tracing::warn!("saving job {id}: {e}");
        }
        let _ = entry.events.send(Event::Status {
            job: Box::new(entry.record.clone()),
        });
        let _ = self.list.send(entry.record.clone());
    }

    /// Recomputes queue positions, telling the jobs whose position changed.
    fn renumber(&self, state: &mut State) {
        let mut positions: HashMap<Id, Option<usize>> = HashMap::new();
        if let Some(id) = state.running {
            positions.insert(id, Some(0));
        }
        for (i, id) in state.queue.iter().enumerate() {
            positions.insert(*id, Some(i + 1));
        }
        let changed: Vec<Id> = state
            .jobs
            .iter()
            .filter(|(id, e)| e.record.position != positions.get(id).copied().flatten())
            .map(|(id, _)| *id)
            .collect();
        for id in changed {
            let position = positions.get(&id).copied().flatten();
            let entry = state.jobs.get_mut(&id).expect("listed above");
            entry.record.position = position;
            let _ = entry.events.send(Event::Status {
                job: Box::new(entry.record.clone()),
            });
            let _ = self.list.send(entry.record.clone());
        }
    }
}

fn entry(record: JobRecord, losses: Vec<LossPoint>) -> Entry {
    Entry {
        record,
        losses,
        events: broadcast::channel(EVENT_BUFFER).0,
        cancel: Arc::new(AtomicBool::new(false)),
    }
}

/// A job's losses from its CSV file (empty when there is none).
fn read_losses(path: &std::path::Path) -> Vec<LossPoint> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let v: Vec<f64> = line
                .split(',')
                .map(|s| s.parse().ok())
                .collect::<Option<_>>()?;
            (v.len() == 7).then(|| LossPoint {
                iteration: v[0] as usize,
                elapsed_s: v[1],
                content: v[2],
                style: v[3],
                tv: v[4],
                total: v[5],
                scale: v[6] as usize,
            })
        })
        .collect()
}
