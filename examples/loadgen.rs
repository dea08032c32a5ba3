//! `loadgen`: load generator for the real-time gateway (issue 6, "Measure"); driven by
//! `scripts/bench_realtime.sh`. Subcommands:
//!
//! ```text
//! loadgen setup-users --base http://127.0.0.1:3201 --bypass TOKEN --users N --out FILE
//! loadgen setup-rooms --base http://127.0.0.1:3201 --bypass TOKEN --rooms N --out FILE
//! loadgen idle   --urls ws://h:p/api/ws[,..] [--tokens FILE] --conns N [--sources 127.0.0.2,..]
//!                --hold SECS [--concurrency 200] [--bypass TOKEN]
//! loadgen fanout --urls ws://h:p/api/ws[,..] (--rooms FILE | --baseline --room-count N)
//!                [--members 5] [--rate 20] [--secs 30] [--bypass TOKEN] [--pids PID,..]
//!                [--pg] [--redis] [--sources ..] [--concurrency 100]
//! loadgen setup-tracking --base http://127.0.0.1:3201 --bypass TOKEN --matches N --out FILE
//! loadgen track  --urls ws://h:p/api/ws[,..] (--matches FILE | --baseline --match-count N)
//!                [--watchers 5] [--rate 10] [--secs 30] [--bypass TOKEN] [--pids PID,..]
//!                [--pg] [--redis] [--sources ..] [--concurrency 100]
//! ```
//!
//! `track`: per match one socket of the traveler sends `position` frames at `--rate` per
//! second (12 m apart, timestamped when sent) and `--watchers` sockets (the sender's and the
//! traveler's in turn) watch `tracking:<match>`; latency is from a position's send to each
//! watcher's `position` frame. Ends with `TRACK_RESULT {json}`.
//!
//! `idle` prints `IDLE_READY established=.. failed=..` once every connection attempt has ended,
//! and `IDLE_DONE established=.. closed_by_server=.. failed=..` after `--hold` seconds (or at
//! SIGTERM/SIGINT, whichever comes first). `fanout` ends with one line
//! `FANOUT_RESULT {json}`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;
type Res<T> = Result<T, String>;

const PASSWORD: &str = "correct horse battery";
const BYPASS_HEADER: &str = "x-ratelimit-bypass";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Arguments

struct Args {
    values: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    fn parse(argv: &[String]) -> Res<Self> {
        let mut values = HashMap::new();
        let mut flags = Vec::new();
        let mut i = 0;
        while i < argv.len() {
            let Some(name) = argv[i].strip_prefix("--") else {
                return Err(format!("unexpected argument `{}`", argv[i]));
            };
            match argv.get(i + 1) {
                Some(v) if !v.starts_with("--") => {
                    values.insert(name.to_owned(), v.clone());
                    i += 2;
                }
                _ => {
                    flags.push(name.to_owned());
                    i += 1;
                }
            }
        }
        Ok(Self { values, flags })
    }

    fn opt(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn req(&self, name: &str) -> Res<&str> {
        self.opt(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn num<T: FromStr>(&self, name: &str, default: Option<T>) -> Res<T> {
        match (self.opt(name), default) {
            (Some(v), _) => v
                .parse()
                .map_err(|_| format!("--{name}: `{v}` is not a valid number")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("--{name} is required")),
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.opt(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

const USAGE: &str =
    "usage: loadgen <setup-users|setup-rooms|idle|fanout|setup-tracking|track> [--options] \
(see the header of examples/loadgen.rs)";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let args = match Args::parse(rest) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.opt("threads").and_then(|t| t.parse().ok()) {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match command.as_str() {
            "setup-users" => setup_users(&args).await,
            "setup-rooms" => setup_rooms(&args).await,
            "idle" => idle(&args).await,
            "fanout" => fanout(&args).await,
            "setup-tracking" => setup_tracking(&args).await,
            "track" => track(&args).await,
            _ => Err(format!("unknown subcommand `{command}`\n{USAGE}")),
        }
    });
    // Do not wait for sockets still closing.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

fn write_file(path: &str, contents: &str) -> Res<()> {
    std::fs::write(path, contents).map_err(|e| format!("write {path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// REST set-up

struct Rest {
    client: reqwest::Client,
    base: String,
    bypass: String,
}

impl Rest {
    fn new(args: &Args) -> Res<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Self {
            client,
            base: args.req("base")?.trim_end_matches('/').to_owned(),
            bypass: args.opt("bypass").unwrap_or_default().to_owned(),
        })
    }

    /// POST with the bypass header; retries 429/503 and transport errors with backoff.
    /// Returns the JSON body of a response with status `want` (or 200/201 when `want` is 0).
    async fn post(&self, path: &str, token: Option<&str>, body: &Value, want: u16) -> Res<Value> {
        let mut last = String::new();
        for attempt in 0..8u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
            }
            let mut req = self
                .client
                .post(format!("{}{path}", self.base))
                .header(BYPASS_HEADER, &self.bypass)
                .json(body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let res = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("POST {path}: {e}");
                    continue;
                }
            };
            let status = res.status().as_u16();
            let text = res.text().await.unwrap_or_default();
            if status == want || (want == 0 && (status == 200 || status == 201)) {
                return serde_json::from_str(&text)
                    .map_err(|e| format!("POST {path}: bad JSON ({e}): {text}"));
            }
            last = format!("POST {path}: {status} {text}");
            if status != 429 && status != 503 {
                break;
            }
        }
        Err(last)
    }

    /// GET with the bypass header; the JSON body of a 200.
    async fn get(&self, path: &str, token: &str) -> Res<Value> {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .header(BYPASS_HEADER, &self.bypass)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        if status != 200 {
            return Err(format!("GET {path}: {status} {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("GET {path}: bad JSON ({e})"))
    }

    async fn register(&self, email: &str) -> Res<String> {
        let body = json!({"email": email, "password": PASSWORD, "display_name": "Load Gen"});
        let v = self.post("/api/auth/register", None, &body, 201).await?;
        v["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("register: no access_token in {v}"))
    }
}

fn trip_body() -> Value {
    let departure = chrono::Utc::now() + chrono::Duration::hours(48);
    json!({
        "origin": {"code": "LHR"},
        "destination": {"code": "JFK"},
        "departure_at": departure,
        "arrival_at": departure + chrono::Duration::hours(8),
        "capacity_grams": 5000,
        "price_per_kg": {"amount": 1500, "currency": "EUR"},
        "accepted_categories": ["books"],
        "flight_number": "BA117",
        "notes": "Hand luggage only."
    })
}

fn parcel_body() -> Value {
    let now = chrono::Utc::now();
    json!({
        "origin": {"code": "LHR"},
        "destination": {"code": "JFK"},
        "pickup_address": "1 Private Road, London",
        "dropoff_address": "2 Secret Street, New York",
        "ready_from": now + chrono::Duration::hours(1),
        "deliver_by": now + chrono::Duration::days(10),
        "weight_grams": 1200,
        "dimensions_cm": [30, 20, 10],
        "category": "books",
        "description": "Three hardback books for my sister.",
        "declared_value": {"amount": 6000, "currency": "EUR"},
        "max_reward": {"amount": 4000, "currency": "EUR"},
        "recipient": {"name": "Ann Recipient", "email": "ann@example.com", "phone": "+12125550123"}
    })
}

const SETUP_IN_FLIGHT: usize = 16;

async fn setup_users(args: &Args) -> Res<()> {
    let rest = Rest::new(args)?;
    let n: usize = args.num("users", None)?;
    let out = args.req("out")?;
    let run = run_id();
    let started = Instant::now();
    let done = AtomicUsize::new(0);
    let results: Vec<Res<String>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (rest, run, done) = (&rest, &run, &done);
            async move {
                let token = rest.register(&format!("lg-{run}-u{i}@example.com")).await;
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d % 100 == 0 {
                    println!(
                        "setup-users: {d}/{n} ({:.0} s)",
                        started.elapsed().as_secs_f64()
                    );
                }
                token
            }
        })
        .buffer_unordered(SETUP_IN_FLIGHT)
        .collect()
        .await;
    let mut tokens = String::new();
    let mut failed = 0;
    for r in results {
        match r {
            Ok(t) => {
                tokens.push_str(&t);
                tokens.push('\n');
            }
            Err(e) => {
                failed += 1;
                eprintln!("setup-users: {e}");
            }
        }
    }
    write_file(out, &tokens)?;
    println!(
        "setup-users: {} users, {failed} failed, {:.1} s -> {out}",
        n - failed,
        started.elapsed().as_secs_f64()
    );
    if failed == n {
        return Err("no user registered".into());
    }
    Ok(())
}

/// A sender, a traveler, a trip, a parcel and a match requested by the sender.
async fn request_match(rest: &Rest, run: &str, name: &str) -> Res<(String, String, Value)> {
    let sender = rest
        .register(&format!("lg-{run}-{name}-s@example.com"))
        .await?;
    let traveler = rest
        .register(&format!("lg-{run}-{name}-t@example.com"))
        .await?;
    let trip = rest
        .post("/api/trips", Some(&traveler), &trip_body(), 201)
        .await?;
    let parcel = rest
        .post("/api/parcels", Some(&sender), &parcel_body(), 201)
        .await?;
    let m = rest
        .post(
            "/api/matches",
            Some(&sender),
            &json!({"parcel_id": parcel["id"], "trip_id": trip["id"]}),
            0,
        )
        .await?;
    Ok((sender, traveler, m))
}

async fn make_room(rest: &Rest, run: &str, i: usize) -> Res<Value> {
    let (sender, traveler, m) = request_match(rest, run, &format!("r{i}")).await?;
    let room_id = m["room_id"]
        .as_str()
        .ok_or_else(|| format!("match without room_id: {m}"))?;
    Ok(json!({"room_id": room_id, "sender_token": sender, "traveler_token": traveler}))
}

/// A match accepted, paid (the test provider) and picked up: in transit, ready for positions.
async fn make_match(rest: &Rest, run: &str, i: usize) -> Res<Value> {
    let (sender, traveler, m) = request_match(rest, run, &format!("m{i}")).await?;
    let id = m["id"]
        .as_str()
        .ok_or_else(|| format!("match without id: {m}"))?
        .to_owned();
    let path = format!("/api/matches/{id}");
    rest.post(&format!("{path}/accept"), Some(&traveler), &json!({}), 200)
        .await?;
    rest.post(&format!("{path}/pay"), Some(&sender), &json!({}), 200)
        .await?;
    let paid = rest.get(&path, &sender).await?;
    let code = paid["pickup_code"]
        .as_str()
        .ok_or_else(|| format!("no pickup_code: {paid}"))?;
    rest.post(
        &format!("{path}/pickup"),
        Some(&traveler),
        &json!({"code": code}),
        200,
    )
    .await?;
    Ok(json!({"match_id": id, "sender_token": sender, "traveler_token": traveler}))
}

#[derive(Clone, Copy)]
enum Fixture {
    Rooms,
    Matches,
}

impl Fixture {
    fn name(self) -> &'static str {
        match self {
            Self::Rooms => "rooms",
            Self::Matches => "matches",
        }
    }
}

async fn setup_rooms(args: &Args) -> Res<()> {
    setup_fixtures(args, Fixture::Rooms).await
}

async fn setup_tracking(args: &Args) -> Res<()> {
    setup_fixtures(args, Fixture::Matches).await
}

/// `--rooms N` chat rooms or `--matches N` matches in transit, written to `--out` as
/// `{"rooms"|"matches": [...]}`.
async fn setup_fixtures(args: &Args, what: Fixture) -> Res<()> {
    let rest = Rest::new(args)?;
    let name = what.name();
    let n: usize = args.num(name, None)?;
    let out = args.req("out")?;
    let run = run_id();
    let started = Instant::now();
    let done = AtomicUsize::new(0);
    let results: Vec<Res<Value>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (rest, run, done) = (&rest, &run, &done);
            async move {
                let item = match what {
                    Fixture::Rooms => make_room(rest, run, i).await,
                    Fixture::Matches => make_match(rest, run, i).await,
                };
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d % 20 == 0 {
                    println!(
                        "setup-{name}: {d}/{n} ({:.0} s)",
                        started.elapsed().as_secs_f64()
                    );
                }
                item
            }
        })
        .buffer_unordered(SETUP_IN_FLIGHT)
        .collect()
        .await;
    let mut items = Vec::new();
    for r in results {
        match r {
            Ok(item) => items.push(item),
            Err(e) => eprintln!("setup-{name}: {e}"),
        }
    }
    let failed = n - items.len();
    write_file(out, &json!({ name: items }).to_string())?;
    println!(
        "setup-{name}: {} {name}, {failed} failed, {:.1} s -> {out}",
        items.len(),
        started.elapsed().as_secs_f64()
    );
    if items.is_empty() {
        return Err(format!("no {name} created"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// WebSocket client

#[derive(Clone)]
struct Target {
    url: String,
    addr: SocketAddr,
}

async fn targets(args: &Args) -> Res<Vec<Target>> {
    let mut out = Vec::new();
    for url in args.list("urls") {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs"))?;
        let host_port = rest.split('/').next().unwrap_or_default();
        let addr = tokio::net::lookup_host(host_port)
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: no address"))?;
        out.push(Target { url, addr });
    }
    if out.is_empty() {
        return Err("--urls is required".into());
    }
    Ok(out)
}

fn sources(args: &Args) -> Res<Vec<IpAddr>> {
    args.list("sources")
        .iter()
        .map(|s| s.parse().map_err(|_| format!("--sources: bad address {s}")))
        .collect()
}

fn ws_config() -> WebSocketConfig {
    // Small buffers: tens of thousands of idle sockets per process.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Opens a socket from `source` (any when `None`), authenticated by `token` when given.
async fn open(
    target: &Target,
    source: Option<IpAddr>,
    token: Option<&str>,
    bypass: Option<&str>,
) -> Res<Ws> {
    let socket = if target.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {}", e.kind()))?;
    if let Some(src) = source {
        socket
            .bind(SocketAddr::new(src, 0))
            .map_err(|e| format!("bind: {}", e.kind()))?;
    }
    let stream = socket
        .connect(target.addr)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let mut req = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("request: {e}"))?;
    if let Some(t) = token {
        let v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|e| e.to_string())?;
        req.headers_mut().insert("authorization", v);
    }
    if let Some(b) = bypass {
        let v = HeaderValue::from_str(b).map_err(|e| e.to_string())?;
        req.headers_mut().insert(BYPASS_HEADER, v);
    }
    match tokio_tungstenite::client_async_with_config(req, stream, Some(ws_config())).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            Err(format!("upgrade refused: HTTP {}", res.status().as_u16()))
        }
        Err(e) => Err(format!("handshake: {e}")),
    }
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    client_msg_id: Option<Cow<'a, str>>,
    seq: Option<i64>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    recorded_at: Option<Cow<'a, str>>,
}

fn close_label(frame: Option<&tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) if f.reason.is_empty() => format!("close {}", u16::from(f.code)),
        Some(f) => format!("close {} ({})", u16::from(f.code), f.reason.as_str()),
        None => "close (no code)".to_owned(),
    }
}

/// Reads until a text frame of type `kind`; an `error` frame or the end of the socket fails.
async fn wait_for(ws: &mut Ws, kind: &str) -> Res<()> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let Ok(f) = serde_json::from_str::<Frame>(&t) else {
                    continue;
                };
                if f.kind == kind {
                    return Ok(());
                }
                if f.kind == "error" {
                    return Err(format!(
                        "error frame {} waiting for {kind}",
                        f.code.unwrap_or_default()
                    ));
                }
            }
            Some(Ok(Message::Close(c))) => {
                return Err(format!("{} waiting for {kind}", close_label(c.as_ref())))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("read error waiting for {kind}: {e}")),
            None => return Err(format!("eof waiting for {kind}")),
        }
    }
}

#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, key: String) {
        self.add_n(key, 1);
    }

    fn add_n(&self, key: String, n: u64) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(key).or_default() += n;
    }

    fn render(&self) -> String {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn to_json(&self) -> Value {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        serde_json::to_value(&*map).unwrap_or_default()
    }
}

fn read_tokens(args: &Args) -> Res<Vec<Arc<str>>> {
    let Some(path) = args.opt("tokens") else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    let tokens: Vec<Arc<str>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(Arc::from)
        .collect();
    if tokens.is_empty() {
        return Err(format!("{path}: no tokens"));
    }
    Ok(tokens)
}

// ---------------------------------------------------------------------------------------------
// idle

#[derive(Default)]
struct IdleStats {
    established: AtomicUsize,
    failed: AtomicUsize,
    closed_by_server: AtomicUsize,
    failures: Tally,
    closes: Tally,
}

struct IdleConn {
    target: Target,
    source: Option<IpAddr>,
    token: Option<Arc<str>>,
    bypass: Option<Arc<str>>,
}

async fn idle_conn(
    conn: IdleConn,
    permit: tokio::sync::OwnedSemaphorePermit,
    stats: Arc<IdleStats>,
    mut stop: watch::Receiver<bool>,
) {
    // Boxed: the handshake's state is not kept in every idle task.
    let opened = tokio::time::timeout(
        CONNECT_TIMEOUT,
        Box::pin(async {
            let mut ws = open(
                &conn.target,
                conn.source,
                conn.token.as_deref(),
                conn.bypass.as_deref(),
            )
            .await?;
            wait_for(&mut ws, "hello").await?;
            Ok::<_, String>(ws)
        }),
    )
    .await;
    drop(conn);
    // Counted before the permit goes back: `idle` reads the totals once it has every permit.
    let mut ws = match opened {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            stats.failures.add(e);
            return;
        }
        Err(_) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            stats.failures.add("timeout (30 s)".into());
            return;
        }
    };
    stats.established.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    // Keep reading: that answers the server's pings (tungstenite queues the pong and writes it
    // on the next read).
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(None)).await;
                return;
            }
            msg = ws.next() => {
                let end = match msg {
                    Some(Ok(Message::Close(c))) => close_label(c.as_ref()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => format!("read error: {e}"),
                    None => "eof".to_owned(),
                };
                if !*stop.borrow() {
                    stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    stats.closes.add(end);
                }
                return;
            }
        }
    }
}

async fn wait_for_signal_or(duration: Duration) {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                () = tokio::time::sleep(duration) => {}
                _ = term.recv() => println!("idle: SIGTERM, ending the hold"),
                _ = int.recv() => println!("idle: SIGINT, ending the hold"),
            }
        }
        _ => tokio::time::sleep(duration).await,
    }
}

async fn idle(args: &Args) -> Res<()> {
    let targets = targets(args).await?;
    let tokens = read_tokens(args)?;
    let sources = sources(args)?;
    let conns: usize = args.num("conns", None)?;
    let hold: f64 = args.num("hold", None)?;
    let concurrency: usize = args.num("concurrency", Some(200))?;
    let bypass: Option<Arc<str>> = args.opt("bypass").map(Arc::from);
    let label = args.opt("label").unwrap_or("idle").to_owned();

    let stats = Arc::new(IdleStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    println!(
        "{label}: opening {conns} sockets to {} url(s) from {} source address(es), {concurrency} at a time",
        targets.len(),
        sources.len().max(1)
    );

    // Progress while connecting.
    let progress = {
        let (stats, label) = (stats.clone(), label.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let (e, f) = (
                    stats.established.load(Ordering::Relaxed),
                    stats.failed.load(Ordering::Relaxed),
                );
                println!(
                    "{label}: progress established={e} failed={f} closed_by_server={} ({:.0} s, {:.0}/s)",
                    stats.closed_by_server.load(Ordering::Relaxed),
                    started.elapsed().as_secs_f64(),
                    e as f64 / started.elapsed().as_secs_f64()
                );
                if e + f >= conns {
                    return;
                }
            }
        })
    };

    let mut handles = Vec::with_capacity(conns);
    for i in 0..conns {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let per_target = i / targets.len();
        let conn = IdleConn {
            target: targets[i % targets.len()].clone(),
            source: (!sources.is_empty()).then(|| sources[per_target % sources.len()]),
            token: (!tokens.is_empty()).then(|| tokens[per_target % tokens.len()].clone()),
            bypass: bypass.clone(),
        };
        handles.push(tokio::spawn(idle_conn(
            conn,
            permit,
            stats.clone(),
            stop_rx.clone(),
        )));
    }
    // Every attempt has ended once all permits are back.
    let _all = gate
        .acquire_many(concurrency.max(1) as u32)
        .await
        .map_err(|e| e.to_string())?;
    progress.abort();
    let established = stats.established.load(Ordering::Relaxed);
    let failed = stats.failed.load(Ordering::Relaxed);
    if failed > 0 {
        println!("{label}: failures: {}", stats.failures.render());
    }
    println!(
        "{label}: all attempts done in {:.1} s ({:.0} conn/s)",
        started.elapsed().as_secs_f64(),
        established as f64 / started.elapsed().as_secs_f64()
    );
    println!("IDLE_READY established={established} failed={failed}");

    wait_for_signal_or(Duration::from_secs_f64(hold)).await;
    let closed = stats.closed_by_server.load(Ordering::Relaxed);
    if closed > 0 {
        println!("{label}: closed by the server: {}", stats.closes.render());
    }
    println!("IDLE_DONE established={established} closed_by_server={closed} failed={failed}");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::future::join_all(handles),
    )
    .await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// fanout

/// CPU time (utime + stime, clock ticks) of a process; `None` when it is gone.
fn proc_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Ticks of every process whose `comm` is `name`, by pid.
fn ticks_by_name(name: &str) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == name {
            if let Some(t) = proc_ticks(pid) {
                out.insert(pid, t);
            }
        }
    }
    out
}

fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

#[derive(Default, Clone)]
struct CpuSnapshot {
    app: HashMap<u32, u64>,
    pg: HashMap<u32, u64>,
    redis: HashMap<u32, u64>,
}

fn cpu_snapshot(pids: &[u32], pg: bool, redis: bool) -> CpuSnapshot {
    CpuSnapshot {
        app: pids
            .iter()
            .filter_map(|p| proc_ticks(*p).map(|t| (*p, t)))
            .collect(),
        pg: if pg {
            ticks_by_name("postgres")
        } else {
            HashMap::new()
        },
        redis: if redis {
            ticks_by_name("redis-server")
        } else {
            HashMap::new()
        },
    }
}

/// Ticks spent between two snapshots (processes born in between count whole).
fn ticks_between(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

/// A room or a match of a fixture file, with its two parties' tokens (none for the baseline).
struct RoomSpec {
    room_id: String,
    sender: Option<Arc<str>>,
    traveler: Option<Arc<str>>,
}

impl Fixture {
    fn id_field(self) -> &'static str {
        match self {
            Self::Rooms => "room_id",
            Self::Matches => "match_id",
        }
    }

    fn count_arg(self) -> &'static str {
        match self {
            Self::Rooms => "room-count",
            Self::Matches => "match-count",
        }
    }
}

fn read_rooms(args: &Args) -> Res<Vec<RoomSpec>> {
    read_specs(args, Fixture::Rooms)
}

/// The rooms or matches of `--rooms`/`--matches FILE` (at most `--room-count`/`--match-count`),
/// or with `--baseline` that many made-up ids.
fn read_specs(args: &Args, what: Fixture) -> Res<Vec<RoomSpec>> {
    let (name, count) = (what.name(), what.count_arg());
    if args.flag("baseline") {
        let n: usize = args.num(count, None)?;
        return Ok((0..n)
            .map(|_| RoomSpec {
                room_id: uuid::Uuid::new_v4().to_string(),
                sender: None,
                traveler: None,
            })
            .collect());
    }
    let path = args.req(name)?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let items = v[name]
        .as_array()
        .ok_or_else(|| format!("{path}: no `{name}` array"))?;
    let mut out: Vec<RoomSpec> = items
        .iter()
        .filter_map(|r| {
            Some(RoomSpec {
                room_id: r[what.id_field()].as_str()?.to_owned(),
                sender: Some(Arc::from(r["sender_token"].as_str()?)),
                traveler: Some(Arc::from(r["traveler_token"].as_str()?)),
            })
        })
        .collect();
    if let Some(limit) = args.opt(count).and_then(|n| n.parse().ok()) {
        out.truncate(limit);
    }
    if out.is_empty() {
        return Err(format!("{path}: no {name}"));
    }
    Ok(out)
}

/// The per-room shared record: when each message was sent (ns since `epoch` + 1; 0 = not yet).
struct RoomLog {
    sent_at: Vec<AtomicU64>,
    acked: AtomicU64,
    receivers: AtomicU64,
}

struct Fan {
    epoch: Instant,
    run: String,
    per_room: usize,
    period: Duration,
    rooms: Vec<RoomLog>,
    sent: AtomicU64,
    delivered: AtomicU64,
    last_delivery_ns: AtomicU64,
}

impl Fan {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The message number of one of this run's client_msg_ids.
    fn index_of(&self, client_msg_id: &str) -> Option<usize> {
        let (run, n) = client_msg_id.rsplit_once('-')?;
        if run != self.run {
            return None;
        }
        n.parse().ok().filter(|n| *n < self.per_room)
    }
}

#[derive(Default)]
struct SocketReport {
    connected: bool,
    failure: Option<String>,
    received: u64,
    duplicates: u64,
    out_of_order: u64,
    foreign: u64,
    echoes: u64,
    acks: u64,
    latencies_us: Vec<u32>,
    ack_latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    closed_by_server: Option<String>,
    send_failures: u64,
    /// Positions never seen because a newer one replaced them (`track`: coalesced).
    skipped: u64,
}

/// What every socket's report adds up to.
#[derive(Default)]
struct Totals {
    received: u64,
    duplicates: u64,
    out_of_order: u64,
    foreign: u64,
    echoes: u64,
    skipped: u64,
    send_failures: u64,
    latencies: Vec<u32>,
    ack_latencies: Vec<u32>,
    failures: Tally,
    closes: Tally,
    errors: Tally,
}

impl Totals {
    fn of(reports: &mut [SocketReport]) -> Self {
        let mut t = Totals::default();
        for r in reports {
            t.received += r.received;
            t.duplicates += r.duplicates;
            t.out_of_order += r.out_of_order;
            t.foreign += r.foreign;
            t.echoes += r.echoes;
            t.skipped += r.skipped;
            t.send_failures += r.send_failures;
            t.latencies.append(&mut r.latencies_us);
            t.ack_latencies.append(&mut r.ack_latencies_us);
            if let Some(f) = r.failure.take() {
                t.failures.add(f);
            }
            if let Some(c) = r.closed_by_server.take() {
                t.closes.add(c);
            }
            for (k, v) in &r.errors {
                t.errors.add_n(k.clone(), *v);
            }
        }
        t.latencies.sort_unstable();
        t.ack_latencies.sort_unstable();
        t
    }

    /// `{p50, p90, p99, max}` of the delivery latencies, ms.
    fn latency_json(&self) -> Value {
        json!({
            "p50": percentile(&self.latencies, 0.50),
            "p90": percentile(&self.latencies, 0.90),
            "p99": percentile(&self.latencies, 0.99),
            "max": percentile(&self.latencies, 1.0),
        })
    }

    fn latency_line(&self) -> String {
        format!(
            "latency ms p50={:.2} p90={:.2} p99={:.2} max={:.2}",
            percentile(&self.latencies, 0.50),
            percentile(&self.latencies, 0.90),
            percentile(&self.latencies, 0.99),
            percentile(&self.latencies, 1.0),
        )
    }

    /// Prints the connect failures, server closes and error frames, if any.
    fn print_troubles(&self, label: &str) {
        for (what, tally) in [
            ("connect failures", &self.failures),
            ("closed by the server", &self.closes),
            ("error frames", &self.errors),
        ] {
            if tally.to_json().as_object().is_some_and(|o| !o.is_empty()) {
                println!("{label}: {what}: {}", tally.render());
            }
        }
    }
}

/// CPU spent between two snapshots, ms: (app, postgres, redis).
fn cpu_spent(before: &CpuSnapshot, after: &CpuSnapshot) -> (f64, f64, f64) {
    let ms = |ticks: u64| ticks as f64 * 1000.0 / clock_ticks_per_sec();
    (
        ms(ticks_between(&before.app, &after.app)),
        ms(ticks_between(&before.pg, &after.pg)),
        ms(ticks_between(&before.redis, &after.redis)),
    )
}

/// Waits for every socket's ready signal (or 120 s of silence); (ready, failed).
async fn await_ready(
    label: &str,
    ready_rx: &mut mpsc::UnboundedReceiver<bool>,
    total: usize,
) -> Res<(usize, usize)> {
    let started = Instant::now();
    let (mut ok, mut failed) = (0usize, 0usize);
    while ok + failed < total {
        match tokio::time::timeout(Duration::from_secs(120), ready_rx.recv()).await {
            Ok(Some(true)) => ok += 1,
            Ok(Some(false)) => failed += 1,
            Ok(None) | Err(_) => break,
        }
        if (ok + failed) % 1000 == 0 {
            println!("{label}: ready {ok}/{total} (failed {failed})");
        }
    }
    println!(
        "{label}: {ok} sockets ready, {failed} failed, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if ok == 0 {
        return Err("no socket ready".into());
    }
    Ok((ok, failed))
}

/// Opens a socket and (with `channel`) subscribes, within `CONNECT_TIMEOUT`, one of at most
/// `gate` at a time.
async fn open_subscribed(
    gate: &Semaphore,
    target: &Target,
    source: Option<IpAddr>,
    token: Option<&str>,
    bypass: Option<&str>,
    channel: Option<Value>,
) -> Res<Ws> {
    let _permit = gate.acquire().await;
    let opened = tokio::time::timeout(
        CONNECT_TIMEOUT,
        Box::pin(async {
            let mut ws = open(target, source, token, bypass).await?;
            wait_for(&mut ws, "hello").await?;
            if let Some(sub) = channel {
                ws.send(Message::Text(Utf8Bytes::from(sub.to_string())))
                    .await
                    .map_err(|e| format!("send subscribe: {e}"))?;
                wait_for(&mut ws, "subscribed").await?;
            }
            Ok::<_, String>(ws)
        }),
    )
    .await;
    opened.unwrap_or_else(|_| Err("timeout (30 s)".into()))
}

/// A received WebSocket message as text; `Err` with what ended the socket, `Ok(None)` for a
/// message that is not text.
fn text_of(
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Result<Option<Utf8Bytes>, String> {
    match msg {
        Some(Ok(Message::Text(raw))) => Ok(Some(raw)),
        Some(Ok(Message::Close(c))) => Err(close_label(c.as_ref())),
        Some(Ok(_)) => Ok(None),
        Some(Err(e)) => Err(format!("read error: {e}")),
        None => Err("eof".into()),
    }
}

/// What each socket task of `fanout`/`track` gets: the connect gate, and the signals of the
/// run (ready, go, stop, done sending).
#[derive(Clone)]
struct Control {
    gate: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<bool>,
    go: watch::Receiver<Option<Instant>>,
    stop: watch::Receiver<bool>,
    done_sending: mpsc::UnboundedSender<()>,
}

/// The other ends, held by the run.
struct Conductor {
    ready: mpsc::UnboundedReceiver<bool>,
    go: watch::Sender<Option<Instant>>,
    stop: watch::Sender<bool>,
    done_sending: mpsc::UnboundedReceiver<()>,
}

fn control(concurrency: usize) -> (Control, Conductor) {
    let (ready_tx, ready_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    (
        Control {
            gate: Arc::new(Semaphore::new(concurrency.max(1))),
            ready: ready_tx,
            go: go_rx,
            stop: stop_rx,
            done_sending: done_tx,
        },
        Conductor {
            ready: ready_rx,
            go: go_tx,
            stop: stop_tx,
            done_sending: done_rx,
        },
    )
}

impl Conductor {
    /// Every socket ready (see `await_ready`), then a second to settle.
    async fn ready(&mut self, label: &str, total: usize) -> Res<(usize, usize)> {
        let counts = await_ready(label, &mut self.ready, total).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(counts)
    }

    /// Tells the senders to start in 100 ms and waits until `senders` have finished; returns
    /// the start.
    async fn send_phase(&mut self, senders: usize) -> Instant {
        let start = Instant::now() + Duration::from_millis(100);
        let _ = self.go.send(Some(start));
        for _ in 0..senders {
            if self.done_sending.recv().await.is_none() {
                break;
            }
        }
        start
    }
}

struct Member {
    room: usize,
    room_id: String,
    publisher: bool,
    stagger: Duration,
    target: Target,
    source: Option<IpAddr>,
    token: Option<Arc<str>>,
    bypass: Option<Arc<str>>,
}

fn micros(ns: u64) -> u32 {
    u32::try_from(ns / 1000).unwrap_or(u32::MAX)
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// The start of the sending phase, or `None` when the run ended before it.
async fn wait_for_go(go: &mut watch::Receiver<Option<Instant>>) -> Option<Instant> {
    loop {
        if let Some(start) = *go.borrow_and_update() {
            return Some(start);
        }
        if go.changed().await.is_err() {
            return None;
        }
    }
}

/// The sender's wait for the start, before its loop (so that loop polls no `go` signal per
/// frame): `Err` when told to stop first. A sender that will not send is counted done.
async fn start_of_sending(
    go: &mut watch::Receiver<Option<Instant>>,
    stop: &mut (impl std::future::Future + Unpin),
    done_sending: &mpsc::UnboundedSender<()>,
) -> Result<Option<Instant>, ()> {
    let start = tokio::select! {
        biased;
        _ = stop => Err(()),
        start = wait_for_go(go) => Ok(start),
    };
    if !matches!(start, Ok(Some(_))) {
        let _ = done_sending.send(());
    }
    start
}

async fn member(m: Member, fan: Arc<Fan>, ctl: Control) -> SocketReport {
    let Control {
        gate,
        ready,
        mut go,
        mut stop,
        done_sending,
    } = ctl;
    let mut report = SocketReport::default();
    let sub =
        json!({"type": "subscribe", "channel": format!("chat:{}", m.room_id), "since_seq": 0});
    let (token, bypass) = (m.token.as_deref(), m.bypass.as_deref());
    let mut ws = match open_subscribed(&gate, &m.target, m.source, token, bypass, Some(sub)).await {
        Ok(ws) => ws,
        Err(e) => {
            report.failure = Some(e);
            let _ = ready.send(false);
            if m.publisher {
                let _ = done_sending.send(());
            }
            return report;
        }
    };
    report.connected = true;
    if !m.publisher {
        fan.rooms[m.room].receivers.fetch_add(1, Ordering::Relaxed);
    }
    let _ = ready.send(true);

    let log = &fan.rooms[m.room];
    // Registered with the watch once, not once per frame (6 000 sockets share it).
    let stop_signal = stop.changed();
    tokio::pin!(stop_signal);
    let mut ticker: Option<tokio::time::Interval> = None;
    if m.publisher {
        match start_of_sending(&mut go, &mut stop_signal, &done_sending).await {
            Ok(Some(start)) => {
                let mut t = tokio::time::interval_at((start + m.stagger).into(), fan.period);
                t.set_missed_tick_behavior(MissedTickBehavior::Delay);
                ticker = Some(t);
            }
            Ok(None) => {}
            Err(()) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return report;
            }
        }
    }
    let mut next = 0usize;
    let mut seen = vec![false; if m.publisher { 0 } else { fan.per_room }];
    let mut last_seq = 0i64;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop_signal => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                break;
            }
            () = tick(&mut ticker), if ticker.is_some() => {
                let frame = json!({"type": "send", "room_id": m.room_id,
                    "client_msg_id": format!("{}-{next}", fan.run),
                    "body": format!("load test message {next} of room {}", m.room)});
                let text = Utf8Bytes::from(frame.to_string());
                log.sent_at[next].store(fan.now_ns() + 1, Ordering::Release);
                if ws.send(Message::Text(text)).await.is_err() {
                    report.send_failures += 1;
                } else {
                    fan.sent.fetch_add(1, Ordering::Relaxed);
                }
                next += 1;
                if next >= fan.per_room {
                    ticker = None;
                    let _ = done_sending.send(());
                }
            }
            msg = ws.next() => {
                let raw = match text_of(msg) {
                    Ok(Some(raw)) => raw,
                    Ok(None) => continue,
                    Err(end) => {
                        report.closed_by_server = Some(end);
                        break;
                    }
                };
                let now = fan.now_ns();
                let Ok(f) = serde_json::from_str::<Frame>(&raw) else {
                    *report.errors.entry("unparsable frame".into()).or_default() += 1;
                    continue;
                };
                match f.kind.as_ref() {
                    "message" => {
                        let Some(n) = f.client_msg_id.as_deref().and_then(|c| fan.index_of(c)) else {
                            report.foreign += 1;
                            continue;
                        };
                        if m.publisher {
                            report.echoes += 1;
                            continue;
                        }
                        if seen[n] {
                            report.duplicates += 1;
                            continue;
                        }
                        seen[n] = true;
                        if let Some(seq) = f.seq {
                            if seq <= last_seq {
                                report.out_of_order += 1;
                            }
                            last_seq = last_seq.max(seq);
                        }
                        report.received += 1;
                        fan.delivered.fetch_add(1, Ordering::Relaxed);
                        fan.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
                        let sent = log.sent_at[n].load(Ordering::Acquire);
                        if sent > 0 {
                            report.latencies_us.push(micros(now.saturating_sub(sent - 1)));
                        }
                    }
                    "ack" => {
                        let Some(n) = f.client_msg_id.as_deref().and_then(|c| fan.index_of(c)) else {
                            continue;
                        };
                        report.acks += 1;
                        log.acked.fetch_add(1, Ordering::Relaxed);
                        let sent = log.sent_at[n].load(Ordering::Acquire);
                        if sent > 0 {
                            report.ack_latencies_us.push(micros(now.saturating_sub(sent - 1)));
                        }
                    }
                    "error" => {
                        let code = f.code.as_deref().unwrap_or("?").to_owned();
                        *report.errors.entry(format!("error frame {code}")).or_default() += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    if m.publisher && ticker.is_some() {
        let _ = done_sending.send(());
    }
    report
}

async fn fanout(args: &Args) -> Res<()> {
    let targets = targets(args).await?;
    let sources = sources(args)?;
    let rooms = read_rooms(args)?;
    let members: usize = args.num("members", Some(5))?;
    let rate: f64 = args.num("rate", Some(20.0))?;
    let secs: f64 = args.num("secs", Some(30.0))?;
    let concurrency: usize = args.num("concurrency", Some(100))?;
    let bypass: Option<Arc<str>> = args.opt("bypass").map(Arc::from);
    let pids: Vec<u32> = args
        .list("pids")
        .iter()
        .map(|p| p.parse().map_err(|_| format!("--pids: bad pid {p}")))
        .collect::<Res<_>>()?;
    let (with_pg, with_redis) = (args.flag("pg"), args.flag("redis"));
    let label = args.opt("label").unwrap_or("fanout").to_owned();
    if members < 2 {
        return Err("--members must be at least 2".into());
    }
    if rate <= 0.0 || secs <= 0.0 {
        return Err("--rate and --secs must be positive".into());
    }
    let per_room = (rate * secs).round().max(1.0) as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let fan = Arc::new(Fan {
        epoch: Instant::now(),
        run: run_id(),
        per_room,
        period,
        rooms: (0..rooms.len())
            .map(|_| RoomLog {
                sent_at: (0..per_room).map(|_| AtomicU64::new(0)).collect(),
                acked: AtomicU64::new(0),
                receivers: AtomicU64::new(0),
            })
            .collect(),
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        last_delivery_ns: AtomicU64::new(0),
    });

    let n_rooms = rooms.len();
    let total_sockets = n_rooms * members;
    println!(
        "{label}: {n_rooms} rooms x {members} sockets ({total_sockets}), {rate} msg/s per room for {secs} s ({per_room} each), run {}",
        fan.run
    );
    let (ctl, mut run_ctl) = control(concurrency);
    let mut handles = Vec::with_capacity(total_sockets);
    let senders_per_room = (members / 2).max(1);
    for (r, room) in rooms.iter().enumerate() {
        for j in 0..members {
            let k = r * members + j;
            let token = if j < senders_per_room {
                room.sender.clone()
            } else {
                room.traveler.clone()
            };
            let m = Member {
                room: r,
                room_id: room.room_id.clone(),
                publisher: j == 0,
                stagger: period.mul_f64(r as f64 / n_rooms as f64),
                target: targets[k % targets.len()].clone(),
                source: (!sources.is_empty()).then(|| sources[k % sources.len()]),
                token,
                bypass: bypass.clone(),
            };
            handles.push(tokio::spawn(member(m, fan.clone(), ctl.clone())));
        }
    }
    drop(ctl);

    // Phase 1: every socket connected and subscribed (replays and hub joins settled).
    let (ok, failed) = run_ctl.ready(&label, total_sockets).await?;

    // Phase 2: send.
    let cpu_before = cpu_snapshot(&pids, with_pg, with_redis);
    let start = run_ctl.send_phase(n_rooms).await;
    let start_ns = start.duration_since(fan.epoch).as_nanos() as u64;
    let send_phase = start.elapsed();
    println!(
        "{label}: sending done in {:.1} s ({} sent); waiting up to 5 s for stragglers",
        send_phase.as_secs_f64(),
        fan.sent.load(Ordering::Relaxed)
    );

    // Phase 3: stragglers.
    let expected = || -> u64 {
        fan.rooms
            .iter()
            .map(|r| r.acked.load(Ordering::Relaxed) * r.receivers.load(Ordering::Relaxed))
            .sum()
    };
    let acked = || -> u64 {
        fan.rooms
            .iter()
            .map(|r| r.acked.load(Ordering::Relaxed))
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let sent = fan.sent.load(Ordering::Relaxed);
        if acked() >= sent && fan.delivered.load(Ordering::Relaxed) >= expected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_after = cpu_snapshot(&pids, with_pg, with_redis);
    let _ = run_ctl.stop.send(true);
    let mut reports = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(r) = h.await {
            reports.push(r);
        }
    }

    // Report.
    let sent = fan.sent.load(Ordering::Relaxed);
    let acked = acked();
    let expected = expected();
    let t = Totals::of(&mut reports);
    let received = t.received;
    let lost = expected.saturating_sub(received);
    let last_ns = fan.last_delivery_ns.load(Ordering::Relaxed);
    let delivery_secs = (last_ns.saturating_sub(start_ns) as f64 / 1e9).max(1e-9);
    let per_sec = received as f64 / delivery_secs;
    let (app, pg, redis) = cpu_spent(&cpu_before, &cpu_after);
    let total = app + pg + redis;
    let per_1000 = |ms: f64| {
        if received == 0 {
            0.0
        } else {
            ms * 1000.0 / received as f64
        }
    };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;

    println!("{label}: sockets connected={ok} failed={failed}");
    println!(
        "{label}: sent={sent} acked={acked} expected_deliveries={expected} received={received} lost={lost} duplicates={} out_of_order={} echoes={} foreign={} send_failures={}",
        t.duplicates, t.out_of_order, t.echoes, t.foreign, t.send_failures
    );
    println!(
        "{label}: deliveries/s={per_sec:.0} over {delivery_secs:.2} s; {}; ack ms p50={:.2} p99={:.2}",
        t.latency_line(),
        percentile(&t.ack_latencies, 0.50),
        percentile(&t.ack_latencies, 0.99),
    );
    if !pids.is_empty() || with_pg || with_redis {
        println!(
            "{label}: CPU ms (per 1000 deliveries): app {app:.0} ({:.1}), postgres {pg:.0} ({:.1}), redis {redis:.0} ({:.1}), total {total:.0} ({:.1})",
            per_1000(app),
            per_1000(pg),
            per_1000(redis),
            per_1000(total),
        );
    }
    t.print_troubles(&label);
    let summary = json!({
        "label": label,
        "rooms": n_rooms,
        "members": members,
        "rate": rate,
        "secs": secs,
        "sockets_ok": ok,
        "sockets_failed": failed,
        "sent": sent,
        "acked": acked,
        "expected_deliveries": expected,
        "received": received,
        "lost": lost,
        "duplicates": t.duplicates,
        "out_of_order": t.out_of_order,
        "deliveries_per_sec": round(per_sec),
        "latency_ms": t.latency_json(),
        "ack_latency_ms": {
            "p50": percentile(&t.ack_latencies, 0.50),
            "p99": percentile(&t.ack_latencies, 0.99),
        },
        "cpu_ms": {
            "app": round(app),
            "postgres": round(pg),
            "redis": round(redis),
            "total": round(total),
        },
        "cpu_ms_per_1000_deliveries": {
            "app": round(per_1000(app)),
            "postgres": round(per_1000(pg)),
            "redis": round(per_1000(redis)),
            "total": round(per_1000(total)),
        },
        "closed_by_server": t.closes.to_json(),
        "error_frames": t.errors.to_json(),
    });
    println!("FANOUT_RESULT {summary}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// track

/// Metres between two positions of one match (at ≤ 25 positions/s that is under the server's
/// 350 m/s plausibility limit, and above its 10 m jitter threshold).
const STEP_M: f64 = 12.0;

/// One match's shared record: when each position was sent (ns since `epoch` + 1; 0 = not yet).
struct MatchLog {
    sent_at: Vec<AtomicU64>,
    /// Wall-clock µs of position 0's `recorded_at`; position k is `first_us + k × period`.
    first_us: AtomicU64,
    watchers: AtomicU64,
}

struct Tracking {
    epoch: Instant,
    per_match: usize,
    period: Duration,
    matches: Vec<MatchLog>,
    sent: AtomicU64,
    delivered: AtomicU64,
    last_delivery_ns: AtomicU64,
}

impl Tracking {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

struct Tracker {
    index: usize,
    match_id: String,
    reporter: bool,
    stagger: Duration,
    target: Target,
    source: Option<IpAddr>,
    token: Option<Arc<str>>,
    bypass: Option<Arc<str>>,
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One socket of `track`: the reporter sends the match's positions; a watcher receives them.
async fn track_socket(m: Tracker, run: Arc<Tracking>, ctl: Control) -> SocketReport {
    let Control {
        gate,
        ready,
        mut go,
        mut stop,
        done_sending,
    } = ctl;
    let mut report = SocketReport::default();
    let sub = (!m.reporter)
        .then(|| json!({"type": "subscribe", "channel": format!("tracking:{}", m.match_id)}));
    let (token, bypass) = (m.token.as_deref(), m.bypass.as_deref());
    let mut ws = match open_subscribed(&gate, &m.target, m.source, token, bypass, sub).await {
        Ok(ws) => ws,
        Err(e) => {
            report.failure = Some(e);
            let _ = ready.send(false);
            if m.reporter {
                let _ = done_sending.send(());
            }
            return report;
        }
    };
    report.connected = true;
    let log = &run.matches[m.index];
    if !m.reporter {
        log.watchers.fetch_add(1, Ordering::Relaxed);
    }
    let _ = ready.send(true);

    // Registered with the watch once, not once per frame (6 000 sockets share it).
    let stop_signal = stop.changed();
    tokio::pin!(stop_signal);
    let mut ticker: Option<tokio::time::Interval> = None;
    if m.reporter {
        match start_of_sending(&mut go, &mut stop_signal, &done_sending).await {
            Ok(Some(start)) => {
                let first = start + m.stagger;
                let wall =
                    unix_us() + first.saturating_duration_since(Instant::now()).as_micros() as u64;
                log.first_us.store(wall, Ordering::Release);
                let mut t = tokio::time::interval_at(first.into(), run.period);
                t.set_missed_tick_behavior(MissedTickBehavior::Delay);
                ticker = Some(t);
            }
            Ok(None) => {}
            Err(()) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return report;
            }
        }
    }
    let mut next = 0usize;
    let mut last: Option<usize> = None;
    let period_us = run.period.as_micros() as u64;
    let (lat0, lng0) = (-40.0 + (m.index % 8000) as f64 * 0.01, 20.0);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop_signal => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                break;
            }
            () = tick(&mut ticker), if ticker.is_some() => {
                let first_us = log.first_us.load(Ordering::Acquire);
                let at_us = first_us + next as u64 * period_us;
                let recorded_at = chrono::DateTime::from_timestamp_micros(at_us as i64)
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                let frame = json!({"type": "position", "match_id": m.match_id,
                    "lat": lat0 + next as f64 * STEP_M / 111_195.0, "lng": lng0,
                    "accuracy_m": 5.0, "recorded_at": recorded_at});
                let text = Utf8Bytes::from(frame.to_string());
                log.sent_at[next].store(run.now_ns() + 1, Ordering::Release);
                if ws.send(Message::Text(text)).await.is_err() {
                    report.send_failures += 1;
                } else {
                    run.sent.fetch_add(1, Ordering::Relaxed);
                }
                next += 1;
                if next >= run.per_match {
                    ticker = None;
                    let _ = done_sending.send(());
                }
            }
            msg = ws.next() => {
                let raw = match text_of(msg) {
                    Ok(Some(raw)) => raw,
                    Ok(None) => continue,
                    Err(end) => {
                        report.closed_by_server = Some(end);
                        break;
                    }
                };
                let now = run.now_ns();
                let Ok(f) = serde_json::from_str::<Frame>(&raw) else {
                    *report.errors.entry("unparsable frame".into()).or_default() += 1;
                    continue;
                };
                match f.kind.as_ref() {
                    "position" if !m.reporter => {
                        let first_us = log.first_us.load(Ordering::Acquire);
                        let k = f
                            .recorded_at
                            .as_deref()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .map(|t| t.timestamp_micros() as u64)
                            .filter(|t| first_us > 0 && *t >= first_us)
                            .map(|t| ((t - first_us + period_us / 2) / period_us) as usize)
                            .filter(|k| *k < run.per_match);
                        let Some(k) = k else {
                            *report.errors.entry("foreign position".into()).or_default() += 1;
                            continue;
                        };
                        match last {
                            Some(l) if k == l => {
                                report.duplicates += 1;
                                continue;
                            }
                            Some(l) if k < l => {
                                report.out_of_order += 1;
                                continue;
                            }
                            Some(l) => report.skipped += (k - l - 1) as u64,
                            None => report.skipped += k as u64,
                        }
                        last = Some(k);
                        report.received += 1;
                        run.delivered.fetch_add(1, Ordering::Relaxed);
                        run.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
                        let sent = log.sent_at[k].load(Ordering::Acquire);
                        if sent > 0 {
                            report.latencies_us.push(micros(now.saturating_sub(sent - 1)));
                        }
                    }
                    "error" => {
                        let code = f.code.as_deref().unwrap_or("?").to_owned();
                        *report.errors.entry(format!("error frame {code}")).or_default() += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    if m.reporter && ticker.is_some() {
        let _ = done_sending.send(());
    }
    report
}

async fn track(args: &Args) -> Res<()> {
    let targets = targets(args).await?;
    let sources = sources(args)?;
    let matches = read_specs(args, Fixture::Matches)?;
    let watchers: usize = args.num("watchers", Some(5))?;
    let rate: f64 = args.num("rate", Some(10.0))?;
    let secs: f64 = args.num("secs", Some(30.0))?;
    let concurrency: usize = args.num("concurrency", Some(100))?;
    let bypass: Option<Arc<str>> = args.opt("bypass").map(Arc::from);
    let pids: Vec<u32> = args
        .list("pids")
        .iter()
        .map(|p| p.parse().map_err(|_| format!("--pids: bad pid {p}")))
        .collect::<Res<_>>()?;
    let (with_pg, with_redis) = (args.flag("pg"), args.flag("redis"));
    let label = args.opt("label").unwrap_or("track").to_owned();
    if watchers < 1 || !(rate > 0.0 && rate <= 25.0) || secs <= 0.0 {
        return Err("--watchers ≥ 1, 0 < --rate ≤ 25, --secs > 0".into());
    }
    let per_match = (rate * secs).round().max(1.0) as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let run = Arc::new(Tracking {
        epoch: Instant::now(),
        per_match,
        period,
        matches: (0..matches.len())
            .map(|_| MatchLog {
                sent_at: (0..per_match).map(|_| AtomicU64::new(0)).collect(),
                first_us: AtomicU64::new(0),
                watchers: AtomicU64::new(0),
            })
            .collect(),
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        last_delivery_ns: AtomicU64::new(0),
    });
    let n = matches.len();
    let per_match_sockets = watchers + 1;
    let total_sockets = n * per_match_sockets;
    println!(
        "{label}: {n} matches x ({watchers} watchers + 1 reporter) = {total_sockets} sockets, {rate} positions/s per match for {secs} s ({per_match} each)"
    );
    let (ctl, mut run_ctl) = control(concurrency);
    let mut handles = Vec::with_capacity(total_sockets);
    for (i, spec) in matches.iter().enumerate() {
        for j in 0..per_match_sockets {
            let k = i * per_match_sockets + j;
            // The reporter is the traveler; watchers alternate sender, traveler.
            let token = if j == 0 || j % 2 == 0 {
                spec.traveler.clone()
            } else {
                spec.sender.clone()
            };
            let t = Tracker {
                index: i,
                match_id: spec.room_id.clone(),
                reporter: j == 0,
                stagger: period.mul_f64(i as f64 / n as f64),
                target: targets[k % targets.len()].clone(),
                source: (!sources.is_empty()).then(|| sources[k % sources.len()]),
                token,
                bypass: bypass.clone(),
            };
            handles.push(tokio::spawn(track_socket(t, run.clone(), ctl.clone())));
        }
    }
    drop(ctl);

    let (ok, failed) = run_ctl.ready(&label, total_sockets).await?;
    let cpu_before = cpu_snapshot(&pids, with_pg, with_redis);
    let start = run_ctl.send_phase(n).await;
    let start_ns = start.duration_since(run.epoch).as_nanos() as u64;
    let send_secs = start.elapsed().as_secs_f64();
    let sent_now = run.sent.load(Ordering::Relaxed);
    println!("{label}: sending done in {send_secs:.1} s ({sent_now} sent); waiting up to 5 s for stragglers");
    let expected = || -> u64 {
        run.matches
            .iter()
            .map(|m| {
                let sent = m
                    .sent_at
                    .iter()
                    .filter(|s| s.load(Ordering::Relaxed) > 0)
                    .count();
                sent as u64 * m.watchers.load(Ordering::Relaxed)
            })
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut idle_since = Instant::now();
    let mut last_seen = 0;
    while Instant::now() < deadline {
        let delivered = run.delivered.load(Ordering::Relaxed);
        if delivered >= expected() {
            break;
        }
        if delivered != last_seen {
            (last_seen, idle_since) = (delivered, Instant::now());
        } else if idle_since.elapsed() > Duration::from_secs(1) {
            break; // the rest were coalesced away
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_after = cpu_snapshot(&pids, with_pg, with_redis);
    let _ = run_ctl.stop.send(true);
    let mut reports = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(r) = h.await {
            reports.push(r);
        }
    }

    let sent = run.sent.load(Ordering::Relaxed);
    let expected = expected();
    let t = Totals::of(&mut reports);
    let last_ns = run.last_delivery_ns.load(Ordering::Relaxed);
    let secs_taken = (last_ns.saturating_sub(start_ns) as f64 / 1e9).max(1e-9);
    let ingested_per_sec = sent as f64 / send_secs.max(1e-9);
    let delivered_per_sec = t.received as f64 / secs_taken;
    let (app, pg, redis) = cpu_spent(&cpu_before, &cpu_after);
    let per_1000 = |ms: f64| {
        if sent == 0 {
            0.0
        } else {
            ms * 1000.0 / sent as f64
        }
    };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;

    println!("{label}: sockets ready={ok} failed={failed}");
    println!(
        "{label}: positions sent={sent} ({ingested_per_sec:.0}/s) expected_deliveries={expected} received={} skipped(coalesced)={} duplicates={} out_of_order={} send_failures={}",
        t.received, t.skipped, t.duplicates, t.out_of_order, t.send_failures
    );
    println!(
        "{label}: deliveries/s={delivered_per_sec:.0}; {}",
        t.latency_line()
    );
    if !pids.is_empty() || with_pg || with_redis {
        println!(
            "{label}: CPU ms (per 1000 positions): app {app:.0} ({:.1}), postgres {pg:.0} ({:.1}), redis {redis:.0} ({:.1})",
            per_1000(app),
            per_1000(pg),
            per_1000(redis),
        );
    }
    t.print_troubles(&label);
    let summary = json!({
        "label": label,
        "matches": n,
        "watchers": watchers,
        "rate": rate,
        "secs": secs,
        "sockets_ok": ok,
        "sockets_failed": failed,
        "positions_sent": sent,
        "positions_per_sec": round(ingested_per_sec),
        "expected_deliveries": expected,
        "received": t.received,
        "skipped_coalesced": t.skipped,
        "duplicates": t.duplicates,
        "out_of_order": t.out_of_order,
        "deliveries_per_sec": round(delivered_per_sec),
        "latency_ms": t.latency_json(),
        "cpu_ms": {
            "app": round(app),
            "postgres": round(pg),
            "redis": round(redis),
        },
        "cpu_ms_per_1000_positions": {
            "app": round(per_1000(app)),
            "postgres": round(per_1000(pg)),
            "redis": round(per_1000(redis)),
        },
        "closed_by_server": t.closes.to_json(),
        "errors": t.errors.to_json(),
    });
    println!("TRACK_RESULT {summary}");
    Ok(())
}
