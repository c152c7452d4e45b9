//! A small HTTP/1.1 load generator for bench/run.sh (std only, keep-alive connections, one
//! blocking thread per connection).
//!
//! `loadgen rate ADDR RATE SECONDS CONNS HEADERS_FILE`
//!   Open loop at a fixed total rate: connection `c` of `C` sends request `i` at
//!   `start + (c + i·C) / RATE`. Latency is taken both from the actual send (service time) and
//!   from the scheduled send time (wrk2-style: a stalled server is charged for every request it
//!   delayed, no coordinated omission). Request `n` carries line `n mod L` of HEADERS_FILE as an
//!   extra header line. Prints one JSON object.
//!
//! `loadgen keys ADDR CONNS KEYS_FILE TEMPLATE SERVED_HEADER OUT_FILE`
//!   Sends one request per key (TEMPLATE is a header line with `{}` for the key, e.g.
//!   `cookie: sid={}`) and writes, per key in order, the value of SERVED_HEADER in the response
//!   (the upstream that answered). Prints one JSON object with counts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn die(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| die(&format!("bad or missing {what}")))
}

fn read_lines(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn request(extra: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nhost: bench\r\nuser-agent: loadgen\r\n{extra}\r\n\r\n").into_bytes()
}

struct Conn {
    stream: BufReader<TcpStream>,
    buf: Vec<u8>,
}

struct Response {
    status: u16,
    served: Option<String>,
}

impl Conn {
    fn open(addr: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Conn { stream: BufReader::with_capacity(16 * 1024, s), buf: Vec::with_capacity(4096) })
    }

    /// Sends one request and reads its response (Content-Length bodies; Envoy sets one on its
    /// direct responses and on proxied ones with a known length).
    fn exchange(&mut self, req: &[u8], want: Option<&str>) -> std::io::Result<Response> {
        self.stream.get_mut().write_all(req)?;
        let mut status = 0u16;
        let mut length = 0usize;
        let mut served = None;
        let mut first = true;
        loop {
            self.buf.clear();
            let n = self.stream.read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
            }
            let line = std::str::from_utf8(&self.buf).unwrap_or("").trim_end();
            if first {
                first = false;
                status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                continue;
            }
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(std::io::Error::other("chunked responses are not supported"));
                } else if want.is_some_and(|w| name.eq_ignore_ascii_case(w)) {
                    served = Some(value.trim().to_owned());
                }
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body)?;
        Ok(Response { status, served })
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0 // ns → µs
}

fn rate(args: &[String]) {
    let addr: String = arg(args, 2, "ADDR");
    let rate: f64 = arg(args, 3, "RATE");
    let seconds: f64 = arg(args, 4, "SECONDS");
    let conns: usize = arg(args, 5, "CONNS");
    let lines = read_lines(&arg::<String>(args, 6, "HEADERS_FILE"));
    if lines.is_empty() || rate <= 0.0 || conns == 0 {
        die("need header lines, a positive rate and connections");
    }
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(lines.iter().map(|l| request(l)).collect());
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    let per_conn = ((rate * seconds) / conns as f64).ceil() as u64;
    let start = Instant::now() + Duration::from_millis(50);
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let (addr, requests, stop) = (addr.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut service = Vec::with_capacity(per_conn as usize);
                let mut corrected = Vec::with_capacity(per_conn as usize);
                let (mut errors, mut non_2xx) = (0u64, 0u64);
                let mut conn = Conn::open(&addr).ok();
                let offset = Duration::from_secs_f64(c as f64 / rate);
                for i in 0..per_conn {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let due = start + offset + interval * i as u32;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    if conn.is_none() {
                        conn = Conn::open(&addr).ok();
                    }
                    let Some(k) = conn.as_mut() else {
                        errors += 1;
                        continue;
                    };
                    let req = &requests[(c + i as usize * conns) % requests.len()];
                    let sent = Instant::now();
                    match k.exchange(req, None) {
                        Ok(r) => {
                            let done = Instant::now();
                            service.push((done - sent).as_nanos() as u64);
                            corrected.push((done - due.min(sent)).as_nanos() as u64);
                            if !(200..300).contains(&r.status) {
                                non_2xx += 1;
                            }
                        }
                        Err(_) => {
                            errors += 1;
                            conn = None;
                        }
                    }
                }
                (service, corrected, errors, non_2xx)
            })
        })
        .collect();
    let (mut service, mut corrected, mut errors, mut non_2xx) = (Vec::new(), Vec::new(), 0, 0);
    for h in handles {
        let (s, c, e, n) = h.join().unwrap_or_else(|_| die("a connection thread panicked"));
        service.extend(s);
        corrected.extend(c);
        errors += e;
        non_2xx += n;
    }
    let elapsed = start.elapsed().as_secs_f64();
    service.sort_unstable();
    corrected.sort_unstable();
    println!(
        "{{\"requests\":{},\"errors\":{errors},\"non_2xx\":{non_2xx},\"seconds\":{elapsed:.3},\
         \"target_rate\":{rate},\"achieved_rate\":{:.1},\
         \"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\
         \"corrected_p50_us\":{:.1},\"corrected_p99_us\":{:.1},\"corrected_max_us\":{:.1}}}",
        service.len(),
        service.len() as f64 / elapsed,
        percentile(&service, 50.0),
        percentile(&service, 90.0),
        percentile(&service, 99.0),
        percentile(&service, 99.9),
        percentile(&service, 100.0),
        percentile(&corrected, 50.0),
        percentile(&corrected, 99.0),
        percentile(&corrected, 100.0),
    );
}

fn keys(args: &[String]) {
    let addr: String = arg(args, 2, "ADDR");
    let conns: usize = arg(args, 3, "CONNS");
    let keys = Arc::new(read_lines(&arg::<String>(args, 4, "KEYS_FILE")));
    let template: String = arg(args, 5, "TEMPLATE");
    let served_header: String = arg(args, 6, "SERVED_HEADER");
    let out: String = arg(args, 7, "OUT_FILE");
    if !template.contains("{}") || conns == 0 {
        die("TEMPLATE needs a {} for the key, CONNS must be positive");
    }
    let started = Instant::now();
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let (addr, keys, template, served_header) =
                (addr.clone(), keys.clone(), template.clone(), served_header.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut conn = None;
                let mut errors = 0u64;
                for (i, key) in keys.iter().enumerate().skip(c).step_by(conns) {
                    let req = request(&template.replace("{}", key));
                    let mut answer = None;
                    for _attempt in 0..3 {
                        if conn.is_none() {
                            conn = Conn::open(&addr).ok();
                        }
                        let Some(k) = conn.as_mut() else { continue };
                        match k.exchange(&req, Some(&served_header)) {
                            Ok(r) if r.status == 200 => {
                                answer = r.served;
                                break;
                            }
                            Ok(_) => {}
                            Err(_) => conn = None,
                        }
                    }
                    if answer.is_none() {
                        errors += 1;
                    }
                    got.push((i, answer.unwrap_or_else(|| "-".to_owned())));
                }
                (got, errors)
            })
        })
        .collect();
    let mut all = vec![String::new(); keys.len()];
    let mut errors = 0;
    for h in handles {
        let (got, e) = h.join().unwrap_or_else(|_| die("a connection thread panicked"));
        errors += e;
        for (i, v) in got {
            all[i] = v;
        }
    }
    let mut text = all.join("\n");
    text.push('\n');
    std::fs::write(&out, text).unwrap_or_else(|e| die(&format!("{out}: {e}")));
    println!(
        "{{\"keys\":{},\"errors\":{errors},\"seconds\":{:.3}}}",
        keys.len(),
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("rate") => rate(&args),
        Some("keys") => keys(&args),
        _ => die(
            "usage: loadgen rate ADDR RATE SECONDS CONNS HEADERS_FILE | keys ADDR CONNS KEYS_FILE TEMPLATE SERVED_HEADER OUT_FILE",
        ),
    }
}
