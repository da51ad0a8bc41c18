//! The agent's logging: stderr always, plus a rotated file (`-log-file`), syslog
//! (`-syslog`) and the `/v1/agent/monitor` feed, in text or JSON (`-log-json`).
//!
//! Rotation is a small writer of our own rather than `tracing-appender`: Consul rotates by
//! size *and* age and prunes to a count, which `tracing-appender`'s time-only rotation cannot
//! express. Syslog is one datagram per line to the local socket (`/dev/log`) in RFC 3164
//! form, which is all `-syslog` needs; no crate is worth a C library for that.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use concord_client_agent::logs::LogFeed;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use super::config::{level_directive, LogSettings};

/// Consul's default `log_rotate_duration`.
const DEFAULT_ROTATE_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Logging to stderr alone at `level`, for commands other than the agent (the proxy).
pub(crate) fn init_stderr(level: &str) -> anyhow::Result<()> {
    let settings = LogSettings {
        level: Some(level.to_string()),
        ..LogSettings::default()
    };
    init(&settings, &LogFeed::default(), &[])
}

/// Installs the subscriber: stderr, and the file, syslog and monitor feed as configured.
/// `warnings` (found while reading the config, before logging ran) are logged once it runs.
pub(crate) fn init(
    settings: &LogSettings,
    feed: &LogFeed,
    warnings: &[String],
) -> anyhow::Result<()> {
    let level = level_directive(settings.level.as_deref().unwrap_or("info"))?;
    // Raft's and DNS's own logs are chatty at debug; keep them one notch quieter than ours.
    let directives = format!("{level},openraft=warn,hickory_server=warn,hickory_proto=warn");
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&directives))
    };
    let json = settings.json;
    let ansi = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = layer(json, ansi, std::io::stderr).with_filter(filter());
    let file = match &settings.file {
        Some(path) => {
            let writer = RotatingFile::open(path, settings)?;
            Some(layer(json, false, Mutex::new(writer)).with_filter(filter()))
        }
        None => None,
    };
    let mut syslog_error = None;
    let syslog = if settings.syslog {
        match Syslog::connect(settings.syslog_facility.as_deref()) {
            Ok(s) => Some(layer(false, false, s).with_filter(filter())),
            Err(e) => {
                syslog_error = Some(e);
                None
            }
        }
    } else {
        None
    };
    let monitor_text = layer(false, false, FeedWriter::maker(feed.clone(), false))
        .with_filter(Watched(feed.clone()));
    let monitor_json = layer(true, false, FeedWriter::maker(feed.clone(), true))
        .with_filter(Watched(feed.clone()));
    // One list, not `Option` layers: a `None` layer counts as a layer without a filter,
    // which enables every callsite, so every library's trace spans (h2 opens several per
    // poll of every connection) were created and dropped for nobody, a fifth of the agent's
    // CPU when 50,000 parked queries wake.
    let mut layers = vec![stderr.boxed()];
    layers.extend(file.map(tracing_subscriber::Layer::boxed));
    layers.extend(syslog.map(tracing_subscriber::Layer::boxed));
    layers.push(monitor_text.boxed());
    layers.push(monitor_json.boxed());
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| anyhow::anyhow!("initialising logging: {e}"))?;
    if let Some(e) = syslog_error {
        tracing::warn!("syslog setup failed, logging without it: {e:#}");
    }
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(())
}

/// The monitor feed's filter: every level a reader may ask for (our own lines at any level,
/// libraries' down to debug), but only while someone reads.
///
/// Its callsite interest follows the readers: `always` while watched, `never` otherwise,
/// and the feed rebuilds tracing's interest cache when the first reader comes and the last
/// goes ([`LogFeed::subscribe`]). A plain `filter_fn` would not do: it decides a callsite's
/// interest once, when the callsite first fires, so a debug line first logged while nobody
/// watched stayed off for every later reader.
struct Watched(LogFeed);

impl Watched {
    fn wants(&self, meta: &tracing::Metadata<'_>) -> bool {
        self.0.is_watched()
            && (meta.target().starts_with("concord") || *meta.level() <= tracing::Level::DEBUG)
    }
}

impl<S> tracing_subscriber::layer::Filter<S> for Watched {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        self.wants(meta)
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.wants(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing_subscriber::filter::LevelFilter> {
        // Unwatched, the monitor wants nothing, so the other layers' levels alone decide
        // which callsites are even looked at.
        Some(if self.0.is_watched() {
            tracing_subscriber::filter::LevelFilter::TRACE
        } else {
            tracing_subscriber::filter::LevelFilter::OFF
        })
    }
}

/// A fmt layer writing text or JSON lines to `writer`.
fn layer<S, W>(
    json: bool,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    if json {
        base.json().boxed()
    } else {
        base.boxed()
    }
}

/// Makes one [`FeedWriter`] per event, so each knows the event's level.
#[derive(Clone)]
struct FeedMaker {
    feed: LogFeed,
    json: bool,
}

impl FeedWriter {
    fn maker(feed: LogFeed, json: bool) -> FeedMaker {
        FeedMaker { feed, json }
    }
}

/// Collects one formatted event and publishes it to the feed when dropped (the fmt layer
/// writes each event in full, then drops its writer).
struct FeedWriter {
    feed: LogFeed,
    json: bool,
    level: tracing::Level,
    line: Vec<u8>,
}

impl Write for FeedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for FeedWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            let line = String::from_utf8_lossy(&self.line);
            self.feed.publish(self.json, self.level, &line);
        }
    }
}

impl<'a> MakeWriter<'a> for FeedMaker {
    type Writer = FeedWriter;

    fn make_writer(&'a self) -> FeedWriter {
        self.writer(tracing::Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> FeedWriter {
        self.writer(*meta.level())
    }
}

impl FeedMaker {
    fn writer(&self, level: tracing::Level) -> FeedWriter {
        FeedWriter {
            feed: self.feed.clone(),
            json: self.json,
            level,
            line: Vec::new(),
        }
    }
}

/// A log file rotated by size and age, as Consul's `-log-file`: the live file keeps the
/// configured name; on rotation it is renamed `<stem>-<unix nanos>.<ext>` and the oldest
/// rotated files beyond `-log-rotate-max-files` are deleted.
pub(crate) struct RotatingFile {
    path: PathBuf,
    file: std::fs::File,
    written: u64,
    opened: SystemTime,
    max_bytes: u64,
    max_age: Duration,
    /// 0 keeps every rotated file, a negative number none.
    max_files: i64,
}

impl RotatingFile {
    /// Opens (appending to) the log file `-log-file` names; a directory (or a path ending in
    /// `/`) gets `consul.log` inside it, as Consul names it.
    pub(crate) fn open(path: &Path, s: &LogSettings) -> anyhow::Result<RotatingFile> {
        let path = if path.as_os_str().to_string_lossy().ends_with('/') || path.is_dir() {
            path.join("consul.log")
        } else {
            path.to_path_buf()
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating log directory {}", dir.display()))?;
        }
        let file = append(&path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile {
            path,
            file,
            written,
            opened: SystemTime::now(),
            max_bytes: s.rotate_bytes.unwrap_or(0),
            max_age: s.rotate_duration.unwrap_or(DEFAULT_ROTATE_DURATION),
            max_files: s.rotate_max_files.unwrap_or(0),
        })
    }

    fn due(&self, next: usize) -> bool {
        let too_big =
            self.max_bytes > 0 && self.written > 0 && self.written + next as u64 > self.max_bytes;
        let too_old =
            !self.max_age.is_zero() && self.opened.elapsed().unwrap_or_default() >= self.max_age;
        too_big || too_old
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let (stem, ext) = self.stem_and_ext();
        let rotated = self.path.with_file_name(format!("{stem}-{nanos}{ext}"));
        std::fs::rename(&self.path, &rotated)?;
        self.file = append(&self.path).map_err(std::io::Error::other)?;
        self.written = 0;
        self.opened = SystemTime::now();
        self.prune()
    }

    fn stem_and_ext(&self) -> (String, String) {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = self
            .path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        (stem, ext)
    }

    /// Rotated files of this log, oldest first (their names sort by time).
    pub(crate) fn rotated(&self) -> Vec<PathBuf> {
        let (stem, ext) = self.stem_and_ext();
        let prefix = format!("{stem}-");
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| {
                n.strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(&ext))
                    .is_some_and(|ts| !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()))
            })
        });
        files.sort();
        files
    }

    fn prune(&self) -> std::io::Result<()> {
        if self.max_files == 0 {
            return Ok(());
        }
        let keep = usize::try_from(self.max_files.max(0)).unwrap_or(0);
        let files = self.rotated();
        let excess = files.len().saturating_sub(keep);
        for old in &files[..excess] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }
}

fn append(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log file {}", path.display()))
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.due(buf.len()) {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Lines to the local syslog daemon, one datagram each, RFC 3164 framed.
struct Syslog {
    socket: std::os::unix::net::UnixDatagram,
    facility: u8,
}

/// Syslog facilities by the names Consul's `syslog_facility` takes.
const FACILITIES: &[(&str, u8)] = &[
    ("KERN", 0),
    ("USER", 1),
    ("MAIL", 2),
    ("DAEMON", 3),
    ("AUTH", 4),
    ("SYSLOG", 5),
    ("LPR", 6),
    ("NEWS", 7),
    ("UUCP", 8),
    ("CRON", 9),
    ("AUTHPRIV", 10),
    ("FTP", 11),
    ("LOCAL0", 16),
    ("LOCAL1", 17),
    ("LOCAL2", 18),
    ("LOCAL3", 19),
    ("LOCAL4", 20),
    ("LOCAL5", 21),
    ("LOCAL6", 22),
    ("LOCAL7", 23),
];

impl Syslog {
    fn connect(facility: Option<&str>) -> anyhow::Result<Syslog> {
        let name = facility.unwrap_or("LOCAL0").to_ascii_uppercase();
        let facility = FACILITIES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .with_context(|| format!("unknown syslog facility {name:?}"))?;
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        let connected = ["/dev/log", "/var/run/syslog", "/var/run/log"]
            .iter()
            .any(|p| socket.connect(p).is_ok());
        if !connected {
            bail!("no syslog socket (/dev/log) to connect to");
        }
        Ok(Syslog { socket, facility })
    }
}

/// One line's writer: knows its severity, sends on drop.
struct SyslogLine<'a> {
    syslog: &'a Syslog,
    severity: u8,
    line: Vec<u8>,
}

impl Write for SyslogLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine<'_> {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let pri = u16::from(self.syslog.facility) * 8 + u16::from(self.severity);
        let message = format!(
            "<{pri}>concord[{}]: {}",
            std::process::id(),
            text.trim_end()
        );
        // Syslog is best effort: a full or absent daemon must not stop the agent.
        let _ = self.syslog.socket.send(message.as_bytes());
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine<'a>;

    fn make_writer(&'a self) -> SyslogLine<'a> {
        SyslogLine {
            syslog: self,
            severity: 6,
            line: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> SyslogLine<'a> {
        let severity = match *meta.level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        SyslogLine {
            syslog: self,
            severity,
            line: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_by_size_and_keep_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let settings = LogSettings {
            rotate_bytes: Some(10),
            rotate_max_files: Some(2),
            ..Default::default()
        };
        let mut f = RotatingFile::open(&dir.path().join("agent.log"), &settings).unwrap();
        for i in 0..5 {
            f.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        let rotated = f.rotated();
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        let live = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
        assert_eq!(live, "line 4\n");
        let newest = std::fs::read_to_string(&rotated[1]).unwrap();
        assert_eq!(newest, "line 3\n");
    }

    #[test]
    fn a_directory_gets_consul_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = PathBuf::from(format!("{}/logs/", dir.path().display()));
        let mut f = RotatingFile::open(&path, &LogSettings::default()).unwrap();
        f.write_all(b"x\n").unwrap();
        assert!(dir.path().join("logs/consul.log").is_file());
        assert_eq!(
            level_directive("ERR").unwrap(),
            "error",
            "Consul spells error err"
        );
        assert!(level_directive("loud").is_err());
    }
}
