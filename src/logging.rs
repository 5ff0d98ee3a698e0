//! How log lines are made and where they go.
//!
//! **Context.** Every line logged while a request is served says which request: the front
//! ([`crate::app`]) runs each request in [`in_request`], and the line formatters add its
//! method, matched route and request id (text: `request{method=… route=… request_id=…}:`,
//! JSON: a `request` object). A task-local value, not a trace span: it costs a request
//! nothing unless a line is written.
//!
//! **Text lines** ([`Text`]): timestamp (RFC 3339, microseconds, UTC), level, request, other
//! spans, target, message and fields ([`TextFields`]); the date and time up to the second are
//! formatted once a second per thread.
//!
//! **Output**: standard error, through two buffers shared by every thread.
//!
//! A logging thread appends its formatted line to the buffer being filled, under a lock (a
//! copy of a few hundred bytes). A thread of its own (`pimgate-log`) swaps that buffer for
//! its empty one every [`FLUSH_EVERY`], or as soon as it holds 64 KiB, and writes it out
//! without the lock. So a busy server makes one system call per few hundred lines, wakes no
//! thread per line, and never writes to the output on a request's thread; an idle one shows
//! a line within [`FLUSH_EVERY`]. Dropping the [`FlushGuard`] writes out what is left (at
//! exit), waiting at most [`STALL_WAIT`] for the output.
//!
//! **A stalled output** (a log pipe nobody reads) holds a logger back only when both buffers
//! are full, and then for at most [`STALL_WAIT`]. Past that, lines are dropped without
//! waiting until the output takes the buffer being written: a stuck log collector slows
//! requests by one bounded wait, never stops them. Dropped lines are counted
//! ([`lines_dropped`], the metric `pimgate_log_lines_dropped_total`) and, once the output
//! moves again, one warning line says how many were lost.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::future::Future;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Method};
use prometheus_client::metrics::counter::Counter;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The request being served, for the lines logged while serving it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub method: Method,
    /// The matched route pattern (`-` when none matched).
    pub route: Option<MatchedPath>,
    pub request_id: HeaderValue,
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// Runs `work` as the serving of `request`: lines it logs carry the request's context.
pub async fn in_request<F: Future>(request: RequestContext, work: F) -> F::Output {
    REQUEST.scope(request, work).await
}

/// The text line format (the default, `log.format = "text"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Text;

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write_timestamp(&mut writer)?;
        let (colour, name) = match *meta.level() {
            Level::ERROR => ("\x1b[31m", "ERROR"),
            Level::WARN => ("\x1b[33m", " WARN"),
            Level::INFO => ("\x1b[32m", " INFO"),
            Level::DEBUG => ("\x1b[34m", "DEBUG"),
            Level::TRACE => ("\x1b[35m", "TRACE"),
        };
        if writer.has_ansi_escapes() {
            write!(writer, " {colour}{name}\x1b[0m ")?;
        } else {
            write!(writer, " {name} ")?;
        }
        if let Ok(written) = REQUEST.try_with(|r| {
            write!(
                writer,
                "request{{method={} route={} request_id={}}}: ",
                r.method,
                r.route.as_ref().map_or("-", MatchedPath::as_str),
                r.request_id.to_str().unwrap_or("-")
            )
        }) {
            written?;
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{{{fields}}}")?;
                }
                writer.write_str(": ")?;
            }
        }
        write!(writer, "{}: ", meta.target())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The fields of a text line (`log.format = "text"`): the message, then `name=value` for each
/// other field (`Debug` form), separated by spaces; names in italics on a terminal. In the
/// message and in errors, the characters a terminal would act on (ESC, BEL, BS, FF, DEL and
/// the C1 controls) are written escaped, so a logged value cannot drive the operator's
/// terminal. The stock field formatter does the same one character at a time, through
/// styled-string wrappers even without colours; this one writes runs of plain text at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl TextVisitor<'_> {
    /// Starts a field: the separating space and, but for the message, `name=`. False: skip
    /// the field (an earlier write failed, or it is `log` crate metadata).
    fn start(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return false;
        }
        self.result = self.begin(name);
        self.result.is_ok()
    }

    fn begin(&mut self, name: &str) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(' ')?;
        }
        if name == "message" {
            return Ok(());
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        if self.writer.has_ansi_escapes() {
            write!(self.writer, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")
        } else {
            write!(self.writer, "{name}=")
        }
    }

    /// An error and, when it has any, its sources: `error=… error.sources=[…, …]`.
    fn error(&mut self, name: &str, value: &(dyn std::error::Error + 'static)) -> fmt::Result {
        write!(Escaping(&mut self.writer), "{value}")?;
        let mut source = value.source();
        if source.is_none() {
            return Ok(());
        }
        write!(self.writer, " {name}.sources=[")?;
        let mut first = true;
        while let Some(s) = source {
            if !std::mem::take(&mut first) {
                self.writer.write_str(", ")?;
            }
            write!(Escaping(&mut self.writer), "{s}")?;
            source = s.source();
        }
        self.writer.write_char(']')
    }
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.start(field) {
            self.result = if field.name() == "message" {
                Escaping(&mut self.writer).write_str(value)
            } else {
                write!(self.writer, "{value:?}")
            };
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.start(field) {
            self.result = self.error(field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field) {
            self.result = if field.name() == "message" {
                write!(Escaping(&mut self.writer), "{value:?}")
            } else {
                write!(self.writer, "{value:?}")
            };
        }
    }
}

/// Writes through to `W` with terminal control characters escaped (`\x1b`, `\u{9b}`).
struct Escaping<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, ch) in text.char_indices() {
            if !matches!(
                ch,
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
            ) {
                continue;
            }
            self.0.write_str(&text[plain..at])?;
            if ch.is_ascii() {
                write!(self.0, "\\x{:02x}", u32::from(ch))?;
            } else {
                write!(self.0, "\\u{{{:x}}}", u32::from(ch))?;
            }
            plain = at + ch.len_utf8();
        }
        self.0.write_str(&text[plain..])
    }
}

/// The time as `2026-12-03T22:42:37.507902Z`; the part up to the second is made once a
/// second per thread.
fn write_timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.0 != secs {
            let at = chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(0), 0)
                .unwrap_or_default();
            cell.1.clear();
            write!(cell.1, "{}", at.format("%Y-%m-%dT%H:%M:%S"))?;
            cell.0 = secs;
        }
        write!(writer, "{}.{:06}Z", cell.1, since.subsec_micros())
    })
}

/// A line format (the JSON one) with the request's context added as a `request` object.
#[derive(Debug, Clone)]
pub struct WithRequest<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithRequest<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Ok(request) = REQUEST.try_with(RequestContext::clone) else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // One JSON object per line: the request goes in before its closing brace.
        let object = line.trim_end();
        let Some(open) = object.strip_suffix('}') else {
            return writer.write_str(&line);
        };
        let request = serde_json::json!({
            "method": request.method.as_str(),
            "route": request.route.as_ref().map_or("-", MatchedPath::as_str),
            "request_id": request.request_id.to_str().unwrap_or("-"),
        });
        let sep = if open.trim_end().ends_with('{') {
            ""
        } else {
            ","
        };
        writeln!(writer, "{open}{sep}\"request\":{request}}}")
    }
}

/// How long a line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// A buffer's size: when the one being filled reaches it, the writing thread is woken.
const BUFFER_BYTES: usize = 64 * 1024;

/// How long a logger waits for room when both buffers are full; past that, the output is
/// taken as stalled and lines are dropped until it takes the buffer being written.
pub const STALL_WAIT: Duration = Duration::from_secs(1);

/// Where the output goes (standard error; memory in tests).
type Output = Box<dyn Write + Send>;

/// Told, on the writing thread, how many lines were dropped since it was last told.
type DropNotice = Box<dyn Fn(u64) + Send>;

/// Lines dropped in this process because the output stalled (the metric
/// `pimgate_log_lines_dropped_total` reads this counter).
static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// The counter of lines dropped on a stalled output, since the process started.
pub fn lines_dropped() -> &'static Counter {
    &DROPPED
}

thread_local! {
    /// Set on the writing thread: its own lines (the drop notice) never wait for room.
    static WRITING_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The buffer lines are appended to. The writing thread owns the other one.
struct Filling {
    lines: Vec<u8>,
    /// The guard was dropped: the thread writes out what is left, then exits.
    stopped: bool,
    /// The thread has exited: loggers write out themselves.
    exited: bool,
    /// A logger waited [`STALL_WAIT`] in vain: lines are dropped, not waited for, until the
    /// thread takes this buffer.
    stalled: bool,
    /// Lines dropped since the thread last reported them.
    dropped: u64,
}

struct Shared {
    filling: Mutex<Filling>,
    /// Wakes the writing thread: a buffer is full, or the guard is dropped.
    full: Condvar,
    /// Wakes loggers held back by a full buffer: the thread has taken it.
    taken: Condvar,
    /// Used by the writing thread, and by loggers once it has stopped.
    out: Mutex<Output>,
    /// How long a logger waits for room ([`STALL_WAIT`]; shorter or longer in tests).
    stall_wait: Duration,
}

impl Shared {
    fn filling(&self) -> MutexGuard<'_, Filling> {
        self.filling.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_out(&self, bytes: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        // A log line that cannot be written has nowhere to be reported.
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }

    /// Appends one line (or part of one: a line is written by one call, so lines never
    /// interleave). Waits only while the buffer is full and the other one is still being
    /// written out, and then for at most [`STALL_WAIT`]; a line that finds no room by then,
    /// or while the output is known to be stalled, is dropped and counted.
    fn append(&self, bytes: &[u8]) {
        let mut filling = self.filling();
        if filling.lines.len() >= BUFFER_BYTES && !filling.exited && !WRITING_THREAD.with(Cell::get)
        {
            let give_up = Instant::now() + self.stall_wait;
            loop {
                if filling.stalled {
                    filling.dropped += 1;
                    DROPPED.inc();
                    return;
                }
                let left = give_up.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    filling.stalled = true;
                    continue;
                }
                filling = self
                    .taken
                    .wait_timeout(filling, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                if filling.lines.len() < BUFFER_BYTES || filling.exited {
                    break;
                }
            }
        }
        if filling.exited {
            filling.lines.extend_from_slice(bytes);
            let lines = std::mem::take(&mut filling.lines);
            self.write_out(&lines);
            return;
        }
        let was = filling.lines.len();
        filling.lines.extend_from_slice(bytes);
        if was < BUFFER_BYTES && filling.lines.len() >= BUFFER_BYTES {
            self.full.notify_one();
        }
    }

    /// The writing thread: every [`FLUSH_EVERY`], or as soon as the buffer being filled is
    /// full, swaps it for its own empty one and writes it out without holding the lock. After
    /// a write, it reports the lines dropped meanwhile through `notice` (a line of its own,
    /// appended without waiting).
    fn run(&self, notice: &DropNotice) {
        WRITING_THREAD.with(|w| w.set(true));
        let mut writing = Vec::with_capacity(BUFFER_BYTES);
        let mut filling = self.filling();
        loop {
            if !filling.stopped && filling.lines.len() < BUFFER_BYTES {
                filling = self
                    .full
                    .wait_timeout(filling, FLUSH_EVERY)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let stopping = filling.stopped;
            if !filling.lines.is_empty() {
                std::mem::swap(&mut filling.lines, &mut writing);
                filling.stalled = false;
                self.taken.notify_all();
                drop(filling);
                self.write_out(&writing);
                writing.clear();
                filling = self.filling();
            }
            let dropped = std::mem::take(&mut filling.dropped);
            if dropped > 0 {
                drop(filling);
                notice(dropped);
                filling = self.filling();
            }
            if stopping {
                // Anything appended while the last buffer was written goes out now, under
                // the lock so that no later line overtakes it; from here on loggers write
                // out themselves.
                let rest = std::mem::take(&mut filling.lines);
                self.write_out(&rest);
                filling.exited = true;
                self.taken.notify_all();
                return;
            }
        }
    }
}

/// The writer for `tracing_subscriber::fmt` (a cheap handle).
#[derive(Clone)]
pub struct LogWriter(Arc<Shared>);

/// Keeps the writing thread; dropping it writes out what is buffered and stops the thread.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Says that the thread has written out the rest and ended.
    ended: std::sync::mpsc::Receiver<()>,
}

/// A writer to standard error and the guard of its writing thread (named `pimgate-log`).
/// Lines dropped on a stalled output are reported as a warning of the process's own
/// subscriber.
pub fn stderr_writer() -> io::Result<(LogWriter, FlushGuard)> {
    writer_to(
        Box::new(io::stderr()),
        Box::new(|lines| {
            tracing::warn!(
                lines,
                "log lines were dropped: standard error took no output for {} s",
                STALL_WAIT.as_secs()
            );
        }),
        STALL_WAIT,
    )
}

fn writer_to(
    out: Output,
    notice: DropNotice,
    stall_wait: Duration,
) -> io::Result<(LogWriter, FlushGuard)> {
    let shared = Arc::new(Shared {
        filling: Mutex::new(Filling {
            lines: Vec::with_capacity(BUFFER_BYTES),
            stopped: false,
            exited: false,
            stalled: false,
            dropped: 0,
        }),
        full: Condvar::new(),
        taken: Condvar::new(),
        out: Mutex::new(out),
        stall_wait,
    });
    let writer = shared.clone();
    let (end, ended) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("pimgate-log".to_owned())
        .spawn(move || {
            writer.run(&notice);
            let _ = end.send(());
        })?;
    Ok((
        LogWriter(shared.clone()),
        FlushGuard {
            shared,
            thread: Some(thread),
            ended,
        },
    ))
}

impl Drop for FlushGuard {
    /// Waits for the rest to be written out, but on a stalled output for at most the stall
    /// wait: then the thread is left behind (the process is ending) and what it holds is
    /// lost, rather than the exit hanging on the log.
    fn drop(&mut self) {
        self.shared.filling().stopped = true;
        self.shared.full.notify_all();
        if self.ended.recv_timeout(self.shared.stall_wait).is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

/// One event's line: appended to the buffer in one call.
pub struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.append(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Lines are written out by the thread, a buffer at a time; not one by one.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer into memory, to read back what a formatter wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    fn context() -> RequestContext {
        RequestContext {
            method: Method::PATCH,
            route: None,
            request_id: HeaderValue::from_static("req-42"),
        }
    }

    /// Logs one line outside a request and one inside, through `subscriber`.
    fn log_both(subscriber: impl Subscriber + Send + Sync + 'static) {
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(connection = "default", "outside");
            REQUEST.sync_scope(context(), || {
                tracing::info!(status = 503u16, "inside");
            });
        });
    }

    #[test]
    fn text_lines_say_which_request_they_belong_to() {
        let out = Captured::default();
        log_both(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(out.clone())
                .fmt_fields(TextFields)
                .event_format(Text)
                .finish(),
        );
        let lines = out.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (outside, inside) = (&lines[0], &lines[1]);
        // 2026-12-03T22:42:37.507902Z
        let (stamp, rest) = outside.split_once(' ').unwrap();
        assert_eq!(stamp.len(), 27, "{outside}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{outside}"
        );
        assert_eq!(
            rest,
            " WARN pimgate::logging::tests: outside connection=\"default\""
        );
        assert!(
            inside.ends_with(
                "  INFO request{method=PATCH route=- request_id=req-42}: \
                 pimgate::logging::tests: inside status=503"
            ),
            "{inside}"
        );
    }

    /// The text fields as the stock formatter writes them (pimgate's lines read the same as
    /// before), with terminal control characters escaped in messages and errors.
    #[test]
    fn text_fields_escape_what_a_terminal_would_act_on() {
        #[derive(Debug)]
        struct Failure(&'static str, Option<Box<Failure>>);
        impl fmt::Display for Failure {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Failure {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let line = |ansi: bool, log: &dyn Fn()| {
            let out = Captured::default();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(ansi)
                .with_writer(out.clone())
                .fmt_fields(TextFields)
                .event_format(Text)
                .finish();
            tracing::subscriber::with_default(subscriber, log);
            let lines = out.lines();
            assert_eq!(lines.len(), 1, "{lines:?}");
            let at = lines[0].find("pimgate::logging::tests: ").unwrap();
            lines[0][at + "pimgate::logging::tests: ".len()..].to_owned()
        };
        let chain = Failure(
            "outer \x1b[2J",
            Some(Box::new(Failure("inner\u{9b}", None))),
        );
        assert_eq!(
            line(false, &|| tracing::error!(
                error = &chain as &(dyn std::error::Error + 'static),
                r#type = "x\x1by",
                n = 7u64,
                ok = true,
                "bell \x07 and {}",
                "\x7f"
            )),
            "bell \\x07 and \\x7f error=outer \\x1b[2J error.sources=[inner\\u{9b}] \
             type=\"x\\u{1b}y\" n=7 ok=true"
        );
        assert_eq!(
            line(false, &|| tracing::info!(plain = "a b", "no escapes")),
            "no escapes plain=\"a b\""
        );
        assert_eq!(
            line(true, &|| tracing::info!(status = 200u16, "done")),
            "done \x1b[3mstatus\x1b[0m\x1b[2m=\x1b[0m200"
        );
    }

    #[test]
    fn json_lines_carry_the_request_as_an_object() {
        let out = Captured::default();
        log_both(
            tracing_subscriber::fmt()
                .with_writer(out.clone())
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(WithRequest(
                    tracing_subscriber::fmt::format().json().flatten_event(true),
                ))
                .finish(),
        );
        let lines = out.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let outside: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let inside: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(outside["message"], "outside");
        assert!(outside.get("request").is_none(), "{outside}");
        assert_eq!(inside["message"], "inside");
        assert_eq!(inside["status"], 503);
        assert_eq!(
            inside["request"],
            serde_json::json!({"method": "PATCH", "route": "-", "request_id": "req-42"})
        );
    }

    /// An output in memory; with a gate, a write waits until the gate opens (a log sink
    /// that has stopped reading) and says when it started waiting.
    #[derive(Clone, Default)]
    struct Sink {
        data: Arc<Mutex<Vec<u8>>>,
        gate: Option<Gate>,
        waiting: Option<std::sync::mpsc::Sender<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(gate) = &self.gate {
                if let Some(waiting) = &self.waiting {
                    let _ = waiting.send(());
                }
                let (open, opened) = &**gate;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = opened.wait(open).unwrap();
                }
            }
            self.data.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.data.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn the_guard_writes_out_what_is_buffered_and_stops_the_thread() {
        let sink = Sink::default();
        let (writer, guard) = writer_to(Box::new(sink.clone()), no_notice(), PATIENT).unwrap();
        writer
            .make_writer()
            .write_all(b"before the guard is dropped\n")
            .unwrap();
        drop(guard);
        assert_eq!(sink.text(), "before the guard is dropped\n");
        // The thread is gone: a later line is written out at once.
        writer.make_writer().write_all(b"after\n").unwrap();
        assert_eq!(sink.text(), "before the guard is dropped\nafter\n");
    }

    #[test]
    fn lines_from_many_threads_all_arrive_whole_and_in_order() {
        const THREADS: usize = 4;
        const LINES: usize = 20_000;
        let sink = Sink::default();
        let (writer, guard) = writer_to(Box::new(sink.clone()), no_notice(), PATIENT).unwrap();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let writer = writer.clone();
                s.spawn(move || {
                    for n in 0..LINES {
                        let line = format!("thread={t} n={n} {}\n", "x".repeat(n % 200));
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let text = sink.text();
        let mut next = [0usize; THREADS];
        for line in text.lines() {
            let mut parts = line.split(' ');
            let t: usize = parts
                .next()
                .unwrap()
                .strip_prefix("thread=")
                .unwrap()
                .parse()
                .unwrap();
            let n: usize = parts
                .next()
                .unwrap()
                .strip_prefix("n=")
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(parts.next().unwrap(), "x".repeat(n % 200), "{line}");
            assert_eq!(n, next[t], "thread {t}: a line is missing or out of order");
            next[t] += 1;
        }
        assert_eq!(next, [LINES; THREADS]);
    }

    /// A stall wait far longer than any test: where a test is not about the bound, a busy
    /// machine must not make it drop lines.
    const PATIENT: Duration = Duration::from_secs(3600);

    fn no_notice() -> DropNotice {
        Box::new(|_| {})
    }

    /// A line that fills a buffer on its own.
    fn full(c: u8) -> Vec<u8> {
        let mut line = vec![c; BUFFER_BYTES];
        line.push(b'\n');
        line
    }

    /// Opened (true) lets a gated [`Sink`] write.
    type Gate = Arc<(Mutex<bool>, Condvar)>;

    /// An output that blocks until its gate opens, and a channel that says when a write
    /// started.
    fn gated_sink() -> (Sink, Gate, std::sync::mpsc::Receiver<()>) {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (waiting, writing) = std::sync::mpsc::channel();
        let sink = Sink {
            gate: Some(gate.clone()),
            waiting: Some(waiting),
            ..Sink::default()
        };
        (sink, gate, writing)
    }

    fn open(gate: &(Mutex<bool>, Condvar)) {
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }

    #[test]
    fn a_stalled_output_holds_loggers_back_only_once_both_buffers_are_full() {
        let (sink, gate, writing) = gated_sink();
        // Here a logger must wait, not drop.
        let (writer, guard) = writer_to(Box::new(sink.clone()), no_notice(), PATIENT).unwrap();
        // A full buffer: the thread takes it and is stuck writing it.
        writer.make_writer().write_all(&full(b'a')).unwrap();
        writing
            .recv_timeout(Duration::from_secs(30))
            .expect("the thread writes a full buffer out");
        // The other buffer takes a line without waiting for the write.
        let (done, finished) = std::sync::mpsc::channel();
        let logger = |line: Vec<u8>, done: std::sync::mpsc::Sender<()>| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                writer.make_writer().write_all(&line).unwrap();
                let _ = done.send(());
            })
        };
        let second = logger(full(b'b'), done.clone());
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("a logger does not wait while the other buffer is written");
        // Both are full now: the next logger waits for the output.
        let third = logger(b"c\n".to_vec(), done);
        assert!(
            finished.recv_timeout(Duration::from_millis(200)).is_err(),
            "a logger went on with both buffers full"
        );
        open(&gate);
        second.join().unwrap();
        third.join().unwrap();
        drop(guard);
        let text = sink.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].len() == BUFFER_BYTES && lines[0].bytes().all(|b| b == b'a'));
        assert!(lines[1].len() == BUFFER_BYTES && lines[1].bytes().all(|b| b == b'b'));
        assert_eq!(lines[2], "c");
    }

    #[test]
    fn dropping_the_guard_waits_for_a_stalled_output_only_for_the_stall_wait() {
        let (sink, gate, writing) = gated_sink();
        let (writer, guard) = writer_to(
            Box::new(sink.clone()),
            no_notice(),
            Duration::from_millis(50),
        )
        .unwrap();
        writer.make_writer().write_all(b"never written\n").unwrap();
        writing
            .recv_timeout(Duration::from_secs(30))
            .expect("the thread writes the line out (and is stuck there)");
        let (done, dropped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(guard);
            let _ = done.send(());
        });
        dropped
            .recv_timeout(Duration::from_secs(30))
            .expect("dropping the guard comes back while the output is stalled");
        open(&gate);
    }

    #[test]
    fn a_stalled_output_drops_lines_after_the_wait_and_says_how_many() {
        let (sink, gate, writing) = gated_sink();
        // The notice is logged through the writer itself, on the writing thread, as the
        // process's warning is: it must not wait for room either.
        let own = Arc::new(std::sync::OnceLock::<LogWriter>::new());
        let notice: DropNotice = Box::new({
            let own = own.clone();
            move |n| {
                if let Some(w) = own.get() {
                    let _ = w
                        .make_writer()
                        .write_all(format!("dropped {n}\n").as_bytes());
                }
            }
        });
        let (writer, guard) =
            writer_to(Box::new(sink.clone()), notice, Duration::from_millis(50)).unwrap();
        let _ = own.set(writer.clone());
        let before = lines_dropped().get();
        // One buffer is being written (stuck), the other is full.
        writer.make_writer().write_all(&full(b'a')).unwrap();
        writing
            .recv_timeout(Duration::from_secs(30))
            .expect("the thread writes a full buffer out");
        writer.make_writer().write_all(&full(b'b')).unwrap();
        // The first logger gives up after its wait; the next ones drop at once. Each comes
        // back (on a thread, so that a logger stuck for good fails the test, not hangs it).
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn({
            let writer = writer.clone();
            move || {
                for line in [&b"c\n"[..], b"d\n", b"e\n"] {
                    writer.make_writer().write_all(line).unwrap();
                }
                let _ = done.send(());
            }
        });
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("loggers come back while the output is stalled");
        assert!(lines_dropped().get() - before >= 3);
        // The output moves again: what was buffered goes out, then the notice.
        open(&gate);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sink.text().contains("dropped 3\n") {
            assert!(Instant::now() < deadline, "no notice of the dropped lines");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Lines are taken again.
        writer.make_writer().write_all(b"f\n").unwrap();
        drop(guard);
        let text = sink.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            4,
            "{:?}",
            lines
                .iter()
                .map(|l| &l[..l.len().min(12)])
                .collect::<Vec<_>>()
        );
        assert!(lines[0].len() == BUFFER_BYTES && lines[0].bytes().all(|b| b == b'a'));
        assert!(lines[1].len() == BUFFER_BYTES && lines[1].bytes().all(|b| b == b'b'));
        assert_eq!(lines[2..], ["dropped 3", "f"]);
    }
}
