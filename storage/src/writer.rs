//! [`TraceWriter`]: the [`EventSink`] that records a run to `T.parquet`.
//!
//! While recording, events are buffered in Arrow builders and written as complete
//! Parquet segments `T.parquet.parts/part-000001.parquet`, ... at least once per
//! [`WriterOptions::flush_interval`] and whenever the buffer is full. Segments are
//! encoded and written by a background thread, so the recording loop (the sampler)
//! is not stalled by compression or the disk; the hand-over channel is bounded, so
//! a disk that cannot keep up slows the producer instead of filling memory. A tracer
//! killed with SIGKILL loses what was buffered plus the segment being written: with
//! the default half-second interval, less than the last second (DESIGN.md).
//!
//! Segment 1 is written empty when the writer is created, so a run killed in its
//! first second still has its `tracer.run`. [`TraceWriter::finish`] merges the
//! segments into `T.parquet` and removes the folder; [`TraceWriter::abandon`] (or
//! dropping the writer) leaves the segments for readers and [`crate::repair`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arrow::array::RecordBatch;

use attach::event::SinkError;
use attach::{Event, EventSink};

use crate::batch::EventBatchBuilder;
use crate::error::{Error, Result};
use crate::layout::{
    create_dirs, create_private_dir, is_being_recorded, lock_parts_dir, parts_dir,
    segment_file_name,
};
use crate::merge::{merge_segments, write_whole_trace};
use crate::parquet_io::{read_run_info, write_segment};
use crate::run::{RunInfo, RunStatus};
use crate::schema::events_schema;
use crate::utc::rfc3339;

/// When a [`TraceWriter`] writes a segment.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// The longest time buffered events wait before they are handed to the segment
    /// thread. Half a second by default, so that with the time to write a segment
    /// a killed tracer loses less than the last second (DESIGN.md).
    pub flush_interval: Duration,
    /// Rows after which the buffer is written whatever the time.
    pub max_segment_rows: usize,
    /// Bytes of argument, value and exception text after which the buffer is written.
    pub max_segment_text_bytes: usize,
}

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions {
            flush_interval: Duration::from_millis(500),
            max_segment_rows: 128 * 1024,
            max_segment_text_bytes: 32 * 1024 * 1024,
        }
    }
}

/// How often (in events) [`TraceWriter::write`] itself looks at the clock, for
/// callers that never call [`TraceWriter::flush_if_due`].
const CLOCK_CHECK_EVENTS: u64 = 1024;

/// Segments handed to the background thread and not yet written, at most.
const SEGMENTS_IN_FLIGHT: usize = 2;

/// Records one run into a trace file; see the module documentation.
pub struct TraceWriter {
    path: PathBuf,
    parts_dir: PathBuf,
    run: RunInfo,
    options: WriterOptions,
    buffer: EventBatchBuilder,
    next_segment: u64,
    last_flush: Instant,
    state: State,
    /// The lock on the segments folder that tells readers the run is being
    /// recorded; released when the writer is finished, abandoned or dropped.
    _recording_lock: File,
}

enum State {
    /// Recording: segments go to the background thread.
    Recording(SegmentThread),
    /// An error stopped the segment thread; the writer refuses further work.
    Stopped,
    /// Finished or abandoned: dropping the writer does nothing more.
    Closed,
}

/// A segment to write, with the run as known when it was cut.
struct SegmentJob {
    number: u64,
    batch: RecordBatch,
    run: RunInfo,
}

struct SegmentThread {
    jobs: SyncSender<SegmentJob>,
    handle: JoinHandle<Result<()>>,
}

impl TraceWriter {
    /// Starts recording `run` to `path` with the default [`WriterOptions`].
    pub fn create(path: &Path, run: RunInfo, force: bool) -> Result<TraceWriter> {
        TraceWriter::create_with_options(path, run, force, WriterOptions::default())
    }

    /// Starts recording `run` to `path`: refuses an existing `path` or
    /// `path.parts` unless `force` (then removes them; never the segments of a run
    /// a live tracer is recording), creates missing parent
    /// folders (mode 0700) and the segments folder (0700), and writes segment 1,
    /// empty, carrying `run`.
    pub fn create_with_options(
        path: &Path,
        run: RunInfo,
        force: bool,
        options: WriterOptions,
    ) -> Result<TraceWriter> {
        let parts_dir = parts_dir(path);
        if path.symlink_metadata().is_ok() {
            if !force {
                return Err(Error::AlreadyExists {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(|e| Error::io("replace", path, e))?;
        }
        if parts_dir.symlink_metadata().is_ok() {
            if !force {
                return Err(Error::AlreadyExists { path: parts_dir });
            }
            if is_being_recorded(&parts_dir) {
                let pid = read_run_info(&parts_dir.join(segment_file_name(1)))
                    .ok()
                    .map(|(run, _)| run.tracer_pid);
                return Err(Error::StillRecording {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            std::fs::remove_dir_all(&parts_dir).map_err(|e| Error::io("replace", &parts_dir, e))?;
        }
        if let Some(parent) = path.parent() {
            create_dirs(parent)?;
        }
        create_private_dir(&parts_dir)?;
        let recording_lock = lock_parts_dir(&parts_dir)?;

        let mut writer = TraceWriter {
            path: path.to_path_buf(),
            buffer: EventBatchBuilder::new(&run.run_id),
            run,
            options,
            next_segment: 1,
            last_flush: Instant::now(),
            state: State::Stopped,
            parts_dir,
            _recording_lock: recording_lock,
        };
        write_segment(
            &writer.parts_dir,
            writer.next_segment,
            &RecordBatch::new_empty(events_schema()),
            &writer.segment_run(),
        )?;
        writer.next_segment += 1;
        writer.state = State::Recording(spawn_segment_thread(writer.parts_dir.clone())?);
        Ok(writer)
    }

    /// The trace file this writer finishes into.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The segments folder being written.
    pub fn parts_dir(&self) -> &Path {
        &self.parts_dir
    }

    /// The run as known now; `events` counts the rows accepted so far.
    pub fn run(&self) -> &RunInfo {
        &self.run
    }

    /// Replaces what is known about the run (counters, the target's version), for
    /// the next segments. The run id must stay the same; `events` stays the
    /// writer's own count.
    pub fn update_run(&mut self, mut run: RunInfo) -> Result<()> {
        self.check_same_run(&run)?;
        run.events = self.run.events;
        self.run = run;
        Ok(())
    }

    /// Buffers one event (hot path: appends to column builders), writing a segment
    /// when the buffer is full or the flush interval has passed.
    pub fn write(&mut self, event: &Event) -> Result<()> {
        if !matches!(self.state, State::Recording(_)) {
            return Err(self.stopped_error());
        }
        self.buffer.push(event);
        self.run.events += 1;
        if self.buffer.rows() >= self.options.max_segment_rows
            || self.buffer.text_bytes() >= self.options.max_segment_text_bytes
        {
            return self.flush();
        }
        if self.run.events.is_multiple_of(CLOCK_CHECK_EVENTS) {
            return self.flush_if_due(Instant::now());
        }
        Ok(())
    }

    /// Writes the buffered events as a segment if the flush interval has passed
    /// since the last one. Call it from the recording loop, also when no event
    /// arrives, so that buffered events reach the disk within the interval.
    pub fn flush_if_due(&mut self, now: Instant) -> Result<()> {
        if self.buffer.rows() > 0
            && now.saturating_duration_since(self.last_flush) >= self.options.flush_interval
        {
            self.flush_at(now)?;
        }
        Ok(())
    }

    /// Writes the buffered events as a segment now (nothing if none are buffered).
    pub fn flush(&mut self) -> Result<()> {
        self.flush_at(Instant::now())
    }

    /// Hands the buffered events to the segment thread; the flush interval restarts
    /// at `now`.
    fn flush_at(&mut self, now: Instant) -> Result<()> {
        if self.buffer.rows() == 0 {
            return Ok(());
        }
        let job = SegmentJob {
            number: self.next_segment,
            batch: self.buffer.finish()?,
            run: self.segment_run(),
        };
        let State::Recording(thread) = &self.state else {
            return Err(self.stopped_error());
        };
        if thread.jobs.send(job).is_err() {
            // The thread ended early: it returns the error that stopped it.
            self.stop_thread()?;
            return Err(self.stopped_error());
        }
        self.next_segment += 1;
        self.last_flush = now;
        Ok(())
    }

    /// Ends the recording: writes the last segment, merges every segment into the
    /// trace file sorted by `seq` (streaming, one batch per segment in memory),
    /// syncs and renames it into place, and removes the segments folder. A run whose
    /// rows are all still buffered is written as the trace file directly.
    ///
    /// `run` is the final run: its `run_id` must be this writer's and its status
    /// not `unfinished`; `events` is set to the rows written, and `ended_at` to now
    /// when not given.
    pub fn finish(mut self, mut run: RunInfo) -> Result<PathBuf> {
        self.check_same_run(&run)?;
        if run.status == RunStatus::Unfinished {
            return Err(Error::StatusNotFinal { run_id: run.run_id });
        }
        if run.ended_at.is_none() {
            run.ended_at = Some(rfc3339(SystemTime::now()));
        }
        // When only the empty first segment is on disk the buffer holds the whole run.
        let whole_run = if self.next_segment == 2 && matches!(self.state, State::Recording(_)) {
            Some(self.buffer.finish()?)
        } else {
            self.flush()?;
            None
        };
        self.stop_thread()?;
        self.state = State::Closed;
        match whole_run {
            Some(batch) => write_whole_trace(&batch, &self.path, run)?,
            None => {
                let segments: Vec<PathBuf> = (1..self.next_segment)
                    .map(|number| self.parts_dir.join(segment_file_name(number)))
                    .collect();
                merge_segments(&segments, &self.path, run)?
            }
        };
        std::fs::remove_dir_all(&self.parts_dir)
            .map_err(|e| Error::io("remove the segments folder", &self.parts_dir, e))?;
        Ok(self.path.clone())
    }

    /// Stops recording without finishing: writes the buffered events as a last
    /// segment and leaves the segments folder, which readers read as an unfinished
    /// run and [`crate::repair`] can merge later. Returns the segments folder.
    pub fn abandon(mut self) -> Result<PathBuf> {
        let flushed = self.flush();
        let stopped = self.stop_thread();
        self.state = State::Closed;
        flushed?;
        stopped?;
        Ok(self.parts_dir.clone())
    }

    /// The run as a segment records it: still unfinished, with the rows so far.
    fn segment_run(&self) -> RunInfo {
        let mut run = self.run.clone();
        run.status = RunStatus::Unfinished;
        run.ended_at = None;
        run
    }

    fn check_same_run(&self, run: &RunInfo) -> Result<()> {
        if run.run_id != self.run.run_id {
            return Err(Error::RunMismatch {
                expected: self.run.run_id.clone(),
                found: run.run_id.clone(),
            });
        }
        Ok(())
    }

    /// Closes the hand-over channel and waits for the segment thread, returning
    /// the error that stopped it, if any.
    fn stop_thread(&mut self) -> Result<()> {
        let State::Recording(thread) = std::mem::replace(&mut self.state, State::Stopped) else {
            return Ok(());
        };
        drop(thread.jobs);
        match thread.handle.join() {
            Ok(result) => result,
            Err(_) => Err(Error::WriterThread {
                path: self.parts_dir.clone(),
            }),
        }
    }

    fn stopped_error(&self) -> Error {
        Error::WriterStopped {
            path: self.path.clone(),
        }
    }
}

impl EventSink for TraceWriter {
    fn event(&mut self, event: &mut Event) -> Result<(), SinkError> {
        self.write(event).map_err(|e| Box::new(e) as SinkError)
    }

    /// Completes a segment when one is due, even when no event arrives.
    fn tick(&mut self, now: Instant) -> Result<(), SinkError> {
        self.flush_if_due(now).map_err(|e| Box::new(e) as SinkError)
    }

    /// The first process to say its Python gives the run's version, which every
    /// later segment carries (a killed recording's segments are all it leaves).
    fn python_identified(&mut self, _pid: u32, python_version: &str) {
        if self.run.python_version.is_none() {
            self.run.python_version = Some(python_version.to_string());
        }
    }
}

impl Drop for TraceWriter {
    /// A writer dropped while recording (an error or panic in the caller) writes
    /// what it buffered as a last segment, so the segments stay a readable run.
    fn drop(&mut self) {
        if matches!(self.state, State::Recording(_)) {
            let _ = self.flush();
            let _ = self.stop_thread();
        }
    }
}

fn spawn_segment_thread(parts_dir: PathBuf) -> Result<SegmentThread> {
    let (jobs, received) = sync_channel::<SegmentJob>(SEGMENTS_IN_FLIGHT);
    let folder = parts_dir.clone();
    let handle = std::thread::Builder::new()
        .name("tracer-segments".into())
        .spawn(move || {
            for job in received {
                write_segment(&folder, job.number, &job.batch, &job.run)?;
            }
            Ok(())
        })
        .map_err(|e| Error::io("start the segment writer thread for", &parts_dir, e))?;
    Ok(SegmentThread { jobs, handle })
}
