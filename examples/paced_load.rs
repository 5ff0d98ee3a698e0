//! A fixed-rate HTTP load generator for `scripts/bench/run`: the latency of a server at a
//! chosen request rate, rather than at saturation (which is what wrk measures).
//!
//! Each of `--connections` keep-alive connections runs on its own thread and sends one
//! `GET` at a time on a fixed schedule: connection `i` of `c` sends its `k`-th request at
//! `start + (i / c + k) * c / rate`, so together they offer `--rate` requests/s, evenly spread.
//! The latency of a request is counted from the moment the schedule said to send it to the end
//! of its response, so a request that had to wait for the one before it (the server fell
//! behind, or this process was not scheduled in time) counts that wait too: a slow stretch
//! cannot hide behind the requests it held back. The time from sending to the response, and
//! how late the generator itself sent, are printed beside it so the two can be told apart.
//!
//! Only `std`: threads sleep until just before their next send (`nanosleep`, microsecond
//! steps), so the schedule has no millisecond timer wheel and no bursts. A request sent up to
//! [`WAKE_EARLY`] before it was due is timed from its send.
//!
//! Run: `cargo run --release --example paced_load -- --rate 20000 --connections 16
//! --duration 10 --warmup 2 [--header 'Authorization: Bearer …'] http://127.0.0.1:PORT/path`
//!
//! Prints one line of `key=value` pairs (times in microseconds):
//! `offered_rps= achieved_rps= requests= errors= p50_us= p90_us= p99_us= p999_us= max_us=
//! service_p50_us= service_p99_us= send_lag_p50_us= send_lag_p99_us=`; `achieved_rps` is
//! the requests due in the measured window over the time until the last of them was
//! answered, so it falls below `offered_rps` when the server cannot keep up. Exits non-zero
//! if a connection fails or a response is not HTTP/1.1 with a `Content-Length`; answers
//! other than 200 count as errors.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

struct Options {
    connections: u32,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    headers: Vec<String>,
    authority: String,
    path: String,
}

/// One connection's measurements, taken after the warm-up.
#[derive(Default)]
struct Samples {
    /// From the scheduled send to the end of the response.
    latency_us: Vec<u32>,
    /// From the actual send to the end of the response.
    service_us: Vec<u32>,
    /// From the scheduled send to the actual send.
    lag_us: Vec<u32>,
    errors: u64,
    /// When the last response ended.
    last_done: Option<Instant>,
}

fn usage() -> String {
    "usage: paced_load --rate N [--connections 16] [--duration 10] [--warmup 2] \
     [--header 'Name: value']... http://HOST:PORT/PATH"
        .to_owned()
}

fn parse_options() -> Result<Options, String> {
    let mut connections = 16u32;
    let mut rate = None;
    let mut duration = 10.0f64;
    let mut warmup = 2.0f64;
    let mut headers = Vec::new();
    let mut url = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--connections" => {
                connections = value("--connections")?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?;
            }
            "--rate" => {
                rate = Some(
                    value("--rate")?
                        .parse::<f64>()
                        .map_err(|e| format!("--rate: {e}"))?,
                );
            }
            "--duration" => {
                duration = value("--duration")?
                    .parse()
                    .map_err(|e| format!("--duration: {e}"))?;
            }
            "--warmup" => {
                warmup = value("--warmup")?
                    .parse()
                    .map_err(|e| format!("--warmup: {e}"))?;
            }
            "--header" => headers.push(value("--header")?),
            "-h" | "--help" => return Err(usage()),
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            other => url = Some(other.to_owned()),
        }
    }
    let rate = rate.ok_or_else(usage)?;
    if !(rate > 0.0 && rate <= 10_000_000.0) {
        return Err("--rate must be in (0, 10000000] requests/s".to_owned());
    }
    if connections == 0 || connections > 1024 {
        return Err("--connections must be 1 to 1024".to_owned());
    }
    if !(duration > 0.0 && duration <= 3600.0 && (0.0..=3600.0).contains(&warmup)) {
        return Err("--duration must be in (0, 3600] s and --warmup in [0, 3600] s".to_owned());
    }
    // Every measured request keeps three samples in memory (12 bytes).
    if rate * duration > 100_000_000.0 {
        return Err("--rate × --duration must be at most 100,000,000 requests".to_owned());
    }
    let url = url.ok_or_else(usage)?;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    };
    Ok(Options {
        connections,
        rate,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        headers,
        authority,
        path,
    })
}

/// How much earlier than due a thread asks to be woken: a sleeping thread wakes some tens
/// of microseconds late (the kernel's timer slack, then a free core), which would otherwise
/// be counted as server latency on every request.
const WAKE_EARLY: Duration = Duration::from_micros(60);

/// The largest response body read.
const MAX_BODY: usize = 16 * 1024 * 1024;

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response (status line, headers, a `Content-Length` body) and returns its status.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<u16> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let header_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(bad("response head over 64 KiB"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed by the server"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head =
        std::str::from_utf8(&buf[..header_end]).map_err(|_| bad("response head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.get(..3))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("no HTTP/1.1 status line"))?;
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .ok_or_else(|| bad("response without Content-Length"))?;
    if length > MAX_BODY {
        return Err(bad("response body over 16 MiB"));
    }
    let total = header_end + length;
    while buf.len() < total {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed inside a body"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if buf.len() > total {
        return Err(bad("more bytes than one response"));
    }
    Ok(status)
}

/// Drives one connection on its schedule until `end`; records what was scheduled after
/// `measure_from`.
fn drive(
    authority: &str,
    request: &[u8],
    schedule: (Instant, Duration, Duration),
    measure_from: Instant,
    end: Instant,
) -> io::Result<Samples> {
    let (start, offset, interval) = schedule;
    let mut stream = TcpStream::connect(authority)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut samples = Samples::default();
    let mut buf = Vec::with_capacity(64 * 1024);
    for k in 0u32.. {
        let scheduled = start + offset + interval * k;
        if scheduled >= end {
            break;
        }
        let now = Instant::now();
        if scheduled > now + WAKE_EARLY {
            thread::sleep(scheduled - now - WAKE_EARLY);
        }
        let sent = Instant::now();
        stream.write_all(request)?;
        let status = read_response(&mut stream, &mut buf)?;
        let done = Instant::now();
        if scheduled >= measure_from {
            // Sent on time or early: from the send; late: from when it was due.
            samples.latency_us.push(micros(done - scheduled.min(sent)));
            samples.service_us.push(micros(done - sent));
            samples
                .lag_us
                .push(micros(sent.saturating_duration_since(scheduled)));
            if status != 200 {
                samples.errors += 1;
            }
            samples.last_done = Some(done);
        }
    }
    Ok(samples)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("paced_load: {message}");
            return ExitCode::from(2);
        }
    };
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n",
        options.path, options.authority
    );
    for header in &options.headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request: Arc<[u8]> = Arc::from(request.into_bytes());

    let c = options.connections;
    let interval = Duration::from_secs_f64(f64::from(c) / options.rate);
    // Every connection is open and waiting before the first send.
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + options.warmup;
    let end = measure_from + options.duration;
    let workers: Vec<_> = (0..c)
        .map(|i| {
            let request = Arc::clone(&request);
            let authority = options.authority.clone();
            let offset = interval * i / c;
            thread::spawn(move || {
                drive(
                    &authority,
                    &request,
                    (start, offset, interval),
                    measure_from,
                    end,
                )
            })
        })
        .collect();

    let mut all = Samples::default();
    for worker in workers {
        match worker.join() {
            Ok(Ok(samples)) => {
                all.latency_us.extend(samples.latency_us);
                all.service_us.extend(samples.service_us);
                all.lag_us.extend(samples.lag_us);
                all.errors += samples.errors;
                all.last_done = all.last_done.max(samples.last_done);
            }
            Ok(Err(e)) => {
                eprintln!("paced_load: connection failed: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!("paced_load: a connection thread panicked");
                return ExitCode::FAILURE;
            }
        }
    }
    all.latency_us.sort_unstable();
    all.service_us.sort_unstable();
    all.lag_us.sort_unstable();
    let lat = &all.latency_us;
    println!(
        "offered_rps={:.0} achieved_rps={:.0} requests={} errors={} p50_us={} p90_us={} \
         p99_us={} p999_us={} max_us={} service_p50_us={} service_p99_us={} \
         send_lag_p50_us={} send_lag_p99_us={}",
        options.rate,
        lat.len() as f64
            / all
                .last_done
                .map_or(options.duration, |t| t - measure_from)
                .as_secs_f64(),
        lat.len(),
        all.errors,
        percentile(lat, 50.0),
        percentile(lat, 90.0),
        percentile(lat, 99.0),
        percentile(lat, 99.9),
        lat.last().copied().unwrap_or(0),
        percentile(&all.service_us, 50.0),
        percentile(&all.service_us, 99.0),
        percentile(&all.lag_us, 50.0),
        percentile(&all.lag_us, 99.0),
    );
    ExitCode::SUCCESS
}
