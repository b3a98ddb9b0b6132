//! A deterministic mutation fuzzer over the Compose corpus, run by `cargo test`: every
//! input (up to 1 MB) loads or is refused within 10 s and 512 MB, or the test fails.
//!
//! Each worker keeps a child process (this binary with `--child`) that limits its own
//! address space and loads the file named on each line it reads; the parent writes the
//! mutated files into a copy of the corpus (so relative `include`s and `env_file`s
//! resolve), waits at most 10 s for the answer, and saves an input that made the child
//! panic, abort, run out of memory or hang under `target/tmp/baton-fuzz/`.
//!
//! `BATON_FUZZ_SECS` (default 60) bounds the run after the seeds, `BATON_FUZZ_SEED`
//! repeats a run's inputs, `BATON_FUZZ_JOBS` sets the workers (default 2),
//! `BATON_FUZZ_SLOW_MS` (default 5000) saves inputs slower than that for a look, and
//! `BATON_FUZZ_REPLAY=<saved dir>` loads one saved input under the same limits.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use baton_spec::{load, render, schema, LoadOptions, Project};

/// The largest input the fuzzer writes, per file.
const MAX_INPUT: usize = 1 << 20;
/// How long one load may take (a debug build, on a shared machine).
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing a loaded project out and reading it back may take (not a bound of
/// the reader's: a debug build renders a million-node project in seconds).
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(60);
/// The child's address space.
const MEMORY: u64 = 512 << 20;
/// Inputs a child loads before it is replaced, so one input's leftovers (heap
/// fragmentation) are not blamed on another.
const CHILD_INPUTS: usize = 200;
/// The mutated files' names, next to the corpus file they started from.
const MAIN: &str = "fuzz-compose.yaml";
const OTHER: &str = "fuzz-other.yaml";
const ENV: &str = "fuzz.env";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child();
    }
    // The arguments `cargo test` passes every test binary.
    if args.iter().any(|a| a == "--list") {
        println!("fuzz: test");
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let skipped = args.iter().any(|a| a == "--ignored")
        || (!filters.is_empty() && !filters.iter().any(|f| "fuzz".contains(f.as_str())));
    if skipped {
        return ExitCode::SUCCESS;
    }
    if let Ok(dir) = std::env::var("BATON_FUZZ_REPLAY") {
        return replay(Path::new(&dir));
    }
    parent()
}

// ---------------------------------------------------------------------------------------
// The child: limits, then one load per line.

fn child() -> ExitCode {
    use nix::sys::resource::{setrlimit, Resource};
    if let Err(e) = setrlimit(Resource::RLIMIT_AS, MEMORY, MEMORY) {
        eprintln!("cannot limit the address space: {e}");
        return ExitCode::FAILURE;
    }
    // An abort must not leave a core file behind.
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (file, env_file) = line.split_once('\t').unwrap_or((&line, ""));
        let mut say = |answer: &str| writeln!(out, "{answer}").and_then(|()| out.flush());
        if load_one(Path::new(file), env_file, &mut say).is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// The environment every input is interpolated in: a few short values and a long one.
fn environment() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("HOME".to_string(), "/nonexistent".to_string()),
        ("A".to_string(), "a".to_string()),
        ("EMPTY".to_string(), String::new()),
        ("BIG".to_string(), "x".repeat(64 << 10)),
    ])
}

/// Loads `file` and says how it went (`ok N` or `err Kind`), then, when it loaded, says
/// whether `baton config`'s output (written to a `fuzz-roundtrip` directory beside it)
/// loads to the same project (`rt …`). Two answers, so the load alone is timed; output
/// larger than an input the fuzzer writes (a port range makes megabytes) is not
/// read back.
fn load_one(
    file: &Path,
    env_file: &str,
    say: &mut dyn FnMut(&str) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    // The same variables for the copy: the env file given, or the project's `.env`.
    let env_files = match (env_file, dir.join(".env")) {
        ("", dot) if dot.is_file() => vec![dot],
        ("", _) => Vec::new(),
        (f, _) => vec![PathBuf::from(f)],
    };
    let opts = LoadOptions {
        files: vec![file.to_path_buf()],
        working_dir: dir.clone(),
        env_files,
        environment: environment(),
        ..Default::default()
    };
    let project = match load(&opts) {
        Ok(p) => p,
        Err(e) => return say(&format!("err {:?}", e.kind())),
    };
    say(&format!("ok {}", project.services.len()))?;
    let text = render::yaml(&project);
    let copy = dir.join("fuzz-roundtrip").join("baton.yaml");
    let written = text.len() <= MAX_INPUT
        && std::fs::create_dir_all(dir.join("fuzz-roundtrip"))
            .and_then(|()| std::fs::write(&copy, &text))
            .is_ok();
    if !written {
        return say("rt skipped");
    }
    let again = load(&LoadOptions {
        files: vec![copy],
        working_dir: dir.join("fuzz-roundtrip"),
        ..opts
    });
    let comparable = |mut p: Project| {
        p.files.clear();
        p.working_dir = PathBuf::new();
        p.baton_marks.clear();
        p
    };
    match again {
        Ok(again) if comparable(again.clone()) == comparable(project.clone()) => say("rt ok"),
        Ok(again) => {
            let a = serde_json::to_string_pretty(&comparable(project)).unwrap_or_default();
            let b = serde_json::to_string_pretty(&comparable(again)).unwrap_or_default();
            let diff = a
                .lines()
                .zip(b.lines())
                .find(|(x, y)| x != y)
                .map(|(x, y)| format!("{x:?} became {y:?}"))
                .unwrap_or_else(|| "a field serde skips".into());
            say(&format!("rt differs: {diff}"))
        }
        Err(e) => say(&format!("rt refused: {e}")),
    }
}

// ---------------------------------------------------------------------------------------
// The parent: seeds, then mutations until the time is up.

fn parent() -> ExitCode {
    let secs: u64 = env_number("BATON_FUZZ_SECS", 60);
    let jobs: usize = env_number("BATON_FUZZ_JOBS", 2).max(1);
    let seed: u64 = env_number("BATON_FUZZ_SEED", clock_seed());
    println!(
        "fuzz: seed {seed} ({secs} s, {jobs} workers; BATON_FUZZ_SEED={seed} repeats the inputs)"
    );
    let corpus = Corpus::read();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let results: Vec<Report> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs)
            .map(|id| {
                let corpus = &corpus;
                scope.spawn(move || Worker::new(id, seed, corpus).run(deadline, jobs))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Report::crashed()))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut total = Report::default();
    for r in results {
        total.add(r);
    }
    println!(
        "fuzz: {} inputs in {elapsed:.1} s ({:.0} inputs/s): {} loaded, {} refused {:?}",
        total.inputs,
        total.inputs as f64 / elapsed.max(0.001),
        total.loaded,
        total.refused.values().sum::<usize>(),
        total.refused
    );
    if let Some((ms, what)) = &total.slowest {
        println!("fuzz: slowest input {ms} ms ({what})");
    }
    println!(
        "fuzz: largest child peak resident memory {} MB",
        total.peak_kb >> 10
    );
    if total.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &total.failures {
            eprintln!("fuzz: FAILED: {f}");
        }
        ExitCode::FAILURE
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

#[derive(Default)]
struct Report {
    inputs: usize,
    loaded: usize,
    refused: BTreeMap<String, usize>,
    slowest: Option<(u128, String)>,
    peak_kb: u64,
    failures: Vec<String>,
}

impl Report {
    fn crashed() -> Report {
        Report {
            failures: vec!["a fuzz worker panicked".into()],
            ..Default::default()
        }
    }

    fn add(&mut self, other: Report) {
        self.inputs += other.inputs;
        self.loaded += other.loaded;
        for (k, v) in other.refused {
            *self.refused.entry(k).or_default() += v;
        }
        if other.slowest.as_ref().map(|s| s.0) > self.slowest.as_ref().map(|s| s.0) {
            self.slowest = other.slowest;
        }
        self.peak_kb = self.peak_kb.max(other.peak_kb);
        self.failures.extend(other.failures);
    }
}

/// The corpus: every file of the shared Compose fixtures, copied once per worker.
struct Corpus {
    /// Compose files, relative to `root`.
    yaml: Vec<PathBuf>,
    /// Every file's bytes, for splicing; env files among them.
    files: Vec<(PathBuf, Vec<u8>)>,
    envs: Vec<usize>,
}

impl Corpus {
    fn read() -> Corpus {
        let root =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compose-spec/fixtures");
        assert!(
            root.is_dir(),
            "the shared Compose fixtures are missing at {}",
            root.display()
        );
        let mut all = Vec::new();
        walk(&root, &mut all);
        let mut corpus = Corpus {
            yaml: Vec::new(),
            files: Vec::new(),
            envs: Vec::new(),
        };
        for p in all {
            let rel = p.strip_prefix(&root).unwrap_or(&p).to_path_buf();
            let bytes = std::fs::read(&p).unwrap_or_default();
            let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.ends_with(".yaml") || name.ends_with(".yml") {
                corpus.yaml.push(rel.clone());
            } else if name.contains("env") {
                corpus.envs.push(corpus.files.len());
            }
            corpus.files.push((rel, bytes));
        }
        assert!(corpus.yaml.len() > 30, "expected the compose-go fixtures");
        corpus
    }

    fn bytes(&self, rel: &Path) -> &[u8] {
        self.files
            .iter()
            .find(|(p, _)| p == rel)
            .map(|(_, b)| b.as_slice())
            .unwrap_or_default()
    }

    /// A copy of the corpus tree under `dir`.
    fn copy_to(&self, dir: &Path) {
        for (rel, bytes) in &self.files {
            let p = dir.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("scratch dir");
            }
            std::fs::write(p, bytes).expect("scratch file");
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// One input: files written into a directory of the corpus copy, the first one loaded.
#[derive(Clone)]
struct Case {
    dir: PathBuf,
    files: Vec<(String, Vec<u8>)>,
    env_file: bool,
    what: String,
}

enum Outcome {
    Answer(String),
    Failed(String),
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    answers: mpsc::Receiver<String>,
    inputs: usize,
}

struct Worker<'a> {
    id: usize,
    seed: u64,
    rng: Rng,
    corpus: &'a Corpus,
    scratch: tempfile::TempDir,
    running: Option<Running>,
    report: Report,
    count: usize,
    /// The files the last input wrote.
    written: Vec<PathBuf>,
    /// Inputs slower than this are saved too (not a failure: a lead for a bound).
    slow_ms: u128,
}

impl<'a> Worker<'a> {
    fn new(id: usize, seed: u64, corpus: &'a Corpus) -> Worker<'a> {
        let scratch = tempfile::tempdir().expect("scratch dir");
        corpus.copy_to(scratch.path());
        Worker {
            id,
            seed,
            rng: Rng(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            corpus,
            scratch,
            running: None,
            report: Report::default(),
            count: 0,
            written: Vec::new(),
            slow_ms: env_number("BATON_FUZZ_SLOW_MS", 5000),
        }
    }

    fn run(mut self, deadline: Instant, jobs: usize) -> Report {
        // The seeds, shared out between the workers: the corpus as it is, then the
        // audit's hostile inputs.
        let mut seeds: Vec<Case> = self
            .corpus
            .yaml
            .iter()
            .map(|rel| Case {
                dir: rel.parent().map(Path::to_path_buf).unwrap_or_default(),
                files: vec![(MAIN.into(), self.corpus.bytes(rel).to_vec())],
                env_file: false,
                what: format!("seed {}", rel.display()),
            })
            .collect();
        seeds.extend(hostile_seeds());
        for case in seeds.into_iter().skip(self.id).step_by(jobs) {
            if !self.check(&case) {
                return self.finish();
            }
        }
        while Instant::now() < deadline {
            let case = self.mutated();
            if !self.check(&case) {
                break;
            }
        }
        self.finish()
    }

    fn finish(mut self) -> Report {
        self.stop_child();
        self.report
    }

    /// Runs `case`; false when it failed (and was saved).
    fn check(&mut self, case: &Case) -> bool {
        self.count += 1;
        let started = Instant::now();
        let outcome = self.load(case);
        let ms = started.elapsed().as_millis();
        self.report.inputs += 1;
        if ms >= self.slow_ms {
            let saved = self.save(case, &format!("slow: {ms} ms"));
            println!("fuzz: slow input ({ms} ms) saved in {}", saved.display());
        }
        if self.report.slowest.as_ref().is_none_or(|s| ms > s.0) {
            let size: usize = case.files.iter().map(|f| f.1.len()).sum();
            self.report.slowest = Some((ms, format!("{}, {size} bytes", case.what)));
        }
        match outcome {
            Outcome::Answer(a) if a.starts_with("ok") => {
                self.report.loaded += 1;
                match self.round_trip() {
                    Outcome::Answer(rt) if rt == "rt ok" || rt == "rt skipped" => true,
                    Outcome::Answer(rt) => {
                        let why = format!(
                            "baton config's output does not load to the same project: {rt}"
                        );
                        self.fail(case, &why);
                        false
                    }
                    Outcome::Failed(why) => {
                        self.fail(
                            case,
                            &format!("while reading baton config's output back: {why}"),
                        );
                        false
                    }
                }
            }
            Outcome::Answer(a) => {
                let kind = a.trim_start_matches("err ").to_string();
                *self.report.refused.entry(kind).or_default() += 1;
                true
            }
            Outcome::Failed(why) => {
                self.fail(case, &why);
                false
            }
        }
    }

    fn fail(&mut self, case: &Case, why: &str) {
        let saved = self.save(case, why);
        self.report.failures.push(format!(
            "{why}\n  input: {}\n  saved in {} (BATON_FUZZ_REPLAY={} cargo test -p baton-spec --test fuzz)",
            case.what,
            saved.display(),
            saved.display()
        ));
    }

    /// The child's second answer for an input that loaded.
    fn round_trip(&mut self) -> Outcome {
        let Some(r) = self.running.as_mut() else {
            return Outcome::Failed("no child".into());
        };
        match r.answers.recv_timeout(ROUND_TRIP_TIMEOUT) {
            Ok(a) => Outcome::Answer(a),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.stop_child();
                Outcome::Failed(format!(
                    "no answer within {} s",
                    ROUND_TRIP_TIMEOUT.as_secs()
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => self.child_died(),
        }
    }

    fn load(&mut self, case: &Case) -> Outcome {
        // The last input's files go first: a name it wrote must not leak into this one.
        for p in self.written.drain(..) {
            let _ = std::fs::remove_file(p);
        }
        let dir = self.scratch.path().join(&case.dir);
        for (name, bytes) in &case.files {
            let p = dir.join(name);
            if std::fs::write(&p, bytes).is_err() {
                return Outcome::Answer("err unwritable".into());
            }
            self.written.push(p);
        }
        let env = if case.env_file {
            dir.join(ENV).display().to_string()
        } else {
            String::new()
        };
        let line = format!("{}\t{env}\n", dir.join(MAIN).display());
        self.ask(&line)
    }

    fn ask(&mut self, line: &str) -> Outcome {
        if self
            .running
            .as_ref()
            .is_some_and(|r| r.inputs >= CHILD_INPUTS)
        {
            self.stop_child();
        }
        if self.running.is_none() {
            match self.start_child() {
                Ok(r) => self.running = Some(r),
                Err(e) => return Outcome::Failed(format!("cannot start the child: {e}")),
            }
        }
        let Some(r) = self.running.as_mut() else {
            return Outcome::Failed("no child".into());
        };
        r.inputs += 1;
        if r.stdin
            .write_all(line.as_bytes())
            .and_then(|()| r.stdin.flush())
            .is_err()
        {
            return self.child_died();
        }
        match r.answers.recv_timeout(TIMEOUT) {
            Ok(a) => Outcome::Answer(a),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.stop_child();
                Outcome::Failed(format!("no answer within {} s", TIMEOUT.as_secs()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => self.child_died(),
        }
    }

    fn stderr_path(&self) -> PathBuf {
        self.scratch.path().join("child.stderr")
    }

    fn start_child(&mut self) -> std::io::Result<Running> {
        let stderr = File::create(self.stderr_path())?;
        // This very binary even when a rebuild has replaced the file meanwhile.
        let exe = Path::new("/proc/self/exe");
        let exe = if exe.exists() {
            exe.to_path_buf()
        } else {
            std::env::current_exe()?
        };
        let mut child = Command::new(exe)
            .arg("--child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        let stdin = child.stdin.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let stdout = child.stdout.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Running {
            child,
            stdin,
            answers,
            inputs: 0,
        })
    }

    fn peak_kb(pid: u32) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    fn stop_child(&mut self) {
        if let Some(mut r) = self.running.take() {
            self.report.peak_kb = self.report.peak_kb.max(Self::peak_kb(r.child.id()));
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }

    fn child_died(&mut self) -> Outcome {
        let status = match self.running.take() {
            Some(mut r) => r.child.wait().map(|s| s.to_string()).unwrap_or_default(),
            None => String::new(),
        };
        let stderr = std::fs::read_to_string(self.stderr_path()).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Outcome::Failed(format!(
            "the child died ({status}):\n    {}",
            tail.join("\n    ")
        ))
    }

    fn save(&self, case: &Case, why: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("baton-fuzz")
            .join(format!("{}-w{}-{}", self.seed, self.id, self.count));
        let _ = std::fs::create_dir_all(&dir);
        for (name, bytes) in &case.files {
            let _ = std::fs::write(dir.join(name), bytes);
        }
        let note = format!(
            "dir: {}\nenv_file: {}\nwhat: {}\nseed: {} worker {} input {}\n\n{why}\n",
            case.dir.display(),
            case.env_file,
            case.what,
            self.seed,
            self.id,
            self.count
        );
        let _ = std::fs::write(dir.join("case.txt"), note);
        dir
    }

    // -----------------------------------------------------------------------------------
    // Mutations.

    fn mutated(&mut self) -> Case {
        let corpus = self.corpus;
        let rel = self.rng.pick(&corpus.yaml).clone();
        let mut what = format!("{}:", rel.display());
        // Half the inputs are changed as YAML trees first (so they mostly still parse and
        // reach the later stages), then as bytes: mostly one to three mutations,
        // sometimes up to eight.
        let (mut main, rounds) = if self.rng.below(2) == 0 {
            let text = tree_mutated(&mut self.rng, corpus.bytes(&rel), &mut what);
            (text, self.rng.below(3))
        } else if self.rng.below(4) == 0 {
            (corpus.bytes(&rel).to_vec(), 1 + self.rng.below(8))
        } else {
            (corpus.bytes(&rel).to_vec(), 1 + self.rng.below(3))
        };
        for _ in 0..rounds {
            let m = mutate(&mut self.rng, &mut main, corpus);
            what.push(' ');
            what.push_str(m);
        }
        main.truncate(MAX_INPUT);
        let mut files = vec![(MAIN.to_string(), main)];
        if self.rng.below(4) == 0 {
            let other = self.rng.pick(&corpus.yaml).clone();
            let mut bytes = corpus.bytes(&other).to_vec();
            for _ in 0..self.rng.below(4) {
                let m = mutate(&mut self.rng, &mut bytes, corpus);
                let _ = write!(what, " other:{m}");
            }
            bytes.truncate(MAX_INPUT);
            files.push((OTHER.into(), bytes));
        }
        let env_file = self.rng.below(4) == 0;
        if env_file {
            let mut bytes = if self.rng.below(6) == 0 || corpus.envs.is_empty() {
                what.push_str(" env:doubling");
                doubling_env(&mut self.rng)
            } else {
                let i = *self.rng.pick(&corpus.envs);
                corpus.files[i].1.clone()
            };
            for _ in 0..self.rng.below(4) {
                let m = mutate(&mut self.rng, &mut bytes, corpus);
                let _ = write!(what, " env:{m}");
            }
            bytes.truncate(MAX_INPUT);
            files.push((ENV.into(), bytes));
        }
        Case {
            dir: rel.parent().map(Path::to_path_buf).unwrap_or_default(),
            files,
            env_file,
            what,
        }
    }
}

/// Loads one saved input (written by [`Worker::save`]) in a fresh child.
fn replay(saved: &Path) -> ExitCode {
    let note = std::fs::read_to_string(saved.join("case.txt")).unwrap_or_default();
    let field = |name: &str| {
        note.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    let mut files = Vec::new();
    for name in [MAIN, OTHER, ENV] {
        if let Ok(bytes) = std::fs::read(saved.join(name)) {
            files.push((name.to_string(), bytes));
        }
    }
    let case = Case {
        dir: PathBuf::from(field("dir:")),
        files,
        env_file: field("env_file:") == "true",
        what: field("what:"),
    };
    let corpus = Corpus::read();
    let mut worker = Worker::new(0, 0, &corpus);
    let ok = worker.check(&case);
    let report = worker.finish();
    if ok {
        println!("fuzz: replay of {}: {:?}", saved.display(), report.refused);
        ExitCode::SUCCESS
    } else {
        for f in &report.failures {
            eprintln!("fuzz: replay of {}: FAILED: {f}", saved.display());
        }
        ExitCode::FAILURE
    }
}

/// splitmix64: small, fast, and the same sequence for the same seed everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }

    /// Mostly small, sometimes large: `1..=max` on a logarithmic scale.
    fn size(&mut self, max: usize) -> usize {
        let bits = usize::BITS - max.leading_zeros();
        let b = self.below(bits as usize + 1);
        1 + self.below((1usize << b).min(max))
    }
}

/// Text the mutations insert: Compose and baton constructs, references to the other
/// files and to what must not be read.
const SNIPPETS: &[&str] = &[
    "include: [fuzz-other.yaml]\n",
    "include:\n  - path: fuzz-other.yaml\n    env_file: fuzz.env\n    project_directory: ..\n",
    "include: [/dev/zero]\n",
    "include: [/]\n",
    "include: [fuzz-compose.yaml]\n",
    "include: [/proc/self/status]\n",
    "services:\n  fz:\n    extends: {file: fuzz-other.yaml, service: fz}\n",
    "services:\n  fz:\n    extends: fz\n",
    "services:\n  fz:\n    extends: {file: /dev/zero, service: a}\n",
    "    env_file: [fuzz.env, {path: /dev/zero, required: false}]\n",
    "    env_file: .\n",
    "x-baton:\n  pipelines: {ci: {jobs: {a: {run: 'true'}}}}\n",
    "vms: {v: {memory: 1G, disks: [{size: 1G}]}}\n",
    "hosts: {h: {address: 10.0.0.1}}\n",
    "    ports: ['1-65535:1-65535', '[::1]:80:80/udp', {target: 80, published: '8080-8090'}]\n",
    "    healthcheck: {interval: 1m30s, timeout: 999999999h, test: [CMD, x]}\n",
    "    deploy: {replicas: 99999999999, resources: {limits: {memory: 512m, cpus: '0.5'}}}\n",
    "x-a: &a {image: x, environment: [A=1]}\n",
    "  <<: [*a, *a]\n",
    "    <<: *a\n",
    "    command: !reset null\n",
    "    ports: !override []\n",
    "    volumes: ['./a:/b:ro,z', 'v:/c:nocopy', {type: tmpfs, target: /t, tmpfs: {size: 1e30}}]\n",
    "    depends_on: {db: {condition: service_healthy, required: false}}\n",
    "    environment: [A=$A, B=${BIG}${BIG}${BIG}, C=${UNSET:?}, D=$$]\n",
    "networks: {n: {ipam: {config: [{subnet: 10.0.0.0/8}]}, external: {name: x}}}\n",
    "secrets: {s: {file: /dev/zero}}\n",
    "configs: {c: {content: \"${BIG}\"}}\n",
    "profiles: [a, b]\n",
    "%YAML 1.2\n---\n",
    "---\n",
    "...\n",
    "? [a, b]\n: c\n",
    "!!binary aGVsbG8=\n",
    "'<<': 1\n",
    "x-: &x !!str\n",
];

const BYTES: &[u8] = b"\t\n\r :-[]{}&*!$#\"'|>?%@`<,\\\x00\xff\xc3\xef\xbb\xbf";

const NUMBERS: &[&str] = &[
    "99999999999999999999999999",
    "1e309",
    "-1",
    "0",
    "65536",
    "4294967296",
    "1-65535:1-65535",
    "0x7fffffffffffffff",
    "0o777777777777777777777",
    "1.5e300",
    "999999999999h",
    "nan",
    "-0",
    ".inf",
    "1_000",
];

/// How often each mutation of [`mutate`] is chosen, in its order: the cheap local ones
/// often, the ones that build large inputs (bombs, repetition, thousands of services)
/// rarely, so the run sees many inputs.
const WEIGHTS: &[usize] = &[
    1, // flip
    2, // byte
    2, // delete
    2, // duplicate
    2, // splice
    8, // snippet
    4, // alias
    1, // bomb
    1, // nest
    2, // interpolation
    1, // tab
    1, // bom
    1, // utf8
    4, // number
    8, // key
    1, // repeat
    1, // truncate
    1, // swap
    1, // indent
    1, // services
    1, // includes
    1, // long key
];

/// An index into `weights`, each chosen in proportion to its weight.
fn weighted(rng: &mut Rng, weights: &[usize]) -> usize {
    let mut n = rng.below(weights.iter().sum());
    for (i, w) in weights.iter().enumerate() {
        if n < *w {
            return i;
        }
        n -= w;
    }
    0
}

/// Applies one mutation to `data` and says which.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, corpus: &Corpus) -> &'static str {
    let len = data.len();
    let at = rng.below(len + 1);
    let line_start = data[..at]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    match weighted(rng, WEIGHTS) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                if !data.is_empty() {
                    let i = rng.below(data.len());
                    data[i] ^= 1 << rng.below(8);
                }
            }
            "flip"
        }
        1 => {
            let b = *rng.pick(BYTES);
            data.insert(at, b);
            "byte"
        }
        2 => {
            let n = rng.size(len - at);
            data.drain(at..(at + n).min(len));
            "delete"
        }
        3 => {
            let n = rng.size(len - at);
            let chunk = data[at..(at + n).min(len)].to_vec();
            splice_in(data, at, &chunk);
            "duplicate"
        }
        4 => {
            let (_, other) = rng.pick(&corpus.files);
            let from = rng.below(other.len() + 1);
            let n = rng.size(other.len() - from + 1);
            let chunk = other[from..(from + n).min(other.len())].to_vec();
            splice_in(data, line_start, &chunk);
            "splice"
        }
        5 => {
            let s = *rng.pick(SNIPPETS);
            let indent = " ".repeat(rng.below(3) * 2);
            let text: String = s.lines().map(|l| format!("{indent}{l}\n")).collect();
            splice_in(data, line_start, text.as_bytes());
            "snippet"
        }
        6 => {
            // An anchor on some value and aliases to it elsewhere.
            let name = format!("a{}", rng.below(4));
            if let Some(colon) = find_from(data, at, b": ") {
                splice_in(data, colon + 2, format!("&{name} ").as_bytes());
            }
            let n = 1 + rng.below(4);
            let refs = vec![format!("*{name}"); n].join(", ");
            splice_in(
                data,
                line_start,
                format!("x-r{}: [{refs}]\n", rng.below(100)).as_bytes(),
            );
            "alias"
        }
        7 => {
            let (width, depth) = (2 + rng.below(10), 2 + rng.below(10));
            let bomb = if rng.below(2) == 0 {
                laughs(width, depth)
            } else {
                merge_bomb(width, depth)
            };
            splice_in(data, line_start, bomb.as_bytes());
            "bomb"
        }
        8 => {
            let k = rng.size(1000);
            let nest = if rng.below(2) == 0 {
                format!("x-n: {}{}\n", "[".repeat(k), "]".repeat(k))
            } else {
                let lines: String = (0..k.min(200))
                    .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                    .collect();
                format!("x-n:\n{lines}")
            };
            splice_in(data, line_start, nest.as_bytes());
            "nest"
        }
        9 => {
            let k = rng.size(20_000);
            let close = if rng.below(4) == 0 { k - 1 } else { k };
            let v = format!("x-i: \"{}x{}\"\n", "${UNSET:-".repeat(k), "}".repeat(close));
            splice_in(data, line_start, v.as_bytes());
            "interpolation"
        }
        10 => {
            data.insert(line_start, b'\t');
            "tab"
        }
        11 => {
            let at = if rng.below(2) == 0 { 0 } else { at };
            splice_in(data, at, b"\xef\xbb\xbf");
            "bom"
        }
        12 => {
            let bad: [&[u8]; 5] = [
                b"\xff",
                b"\xc3",
                b"\xe2\x82",
                b"\xed\xa0\x80",
                b"\xf8\x88\x80\x80\x80",
            ];
            let bad = *rng.pick(&bad);
            splice_in(data, at, bad);
            "utf8"
        }
        13 => {
            let n = rng.pick(NUMBERS).as_bytes();
            match data[at..].iter().position(u8::is_ascii_digit) {
                Some(i) => {
                    let start = at + i;
                    let end = data[start..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(data.len(), |j| start + j);
                    data.splice(start..end, n.iter().copied());
                }
                None => splice_in(data, at, n),
            }
            "number"
        }
        14 => {
            let lists: [&[&str]; 4] = [
                schema::SERVICE,
                schema::TOP,
                schema::BATON_TOP,
                schema::DEPLOY,
            ];
            let key = if rng.below(3) == 0 {
                random_word(rng)
            } else {
                let list = *rng.pick(&lists);
                rng.pick(list).to_string()
            };
            let value = rng.pick(&[
                "x",
                "",
                "[]",
                "{}",
                "null",
                "1",
                "[a, {b: c}]",
                "!reset",
                "*a0",
            ]);
            let indent = " ".repeat(rng.below(4) * 2);
            splice_in(
                data,
                line_start,
                format!("{indent}{key}: {value}\n").as_bytes(),
            );
            "key"
        }
        15 => {
            // Repeat a piece until the file is up to 1 MB.
            let n = rng.size(256.min(len - at + 1));
            let chunk = data[at..(at + n).min(len)].to_vec();
            if !chunk.is_empty() {
                let times = rng.size(MAX_INPUT / chunk.len());
                let repeated = chunk.repeat(times);
                splice_in(data, at, &repeated);
            }
            "repeat"
        }
        16 => {
            data.truncate(at);
            "truncate"
        }
        17 => {
            let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
            if lines.len() > 1 {
                let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
                let mut lines: Vec<Vec<u8>> = lines.into_iter().map(<[u8]>::to_vec).collect();
                lines.swap(i, j);
                *data = lines.join(&b'\n');
            }
            "swap"
        }
        18 => {
            let n = rng.below(5);
            splice_in(data, line_start, " ".repeat(n).as_bytes());
            "indent"
        }
        19 => {
            let n = 2 + rng.below(5000);
            let mut services = String::from("services:\n");
            for i in 0..n {
                let _ = writeln!(
                    services,
                    "  s{i}: {{image: x, extends: s{}, depends_on: [s{}]}}",
                    i + 1,
                    rng.below(n)
                );
            }
            if rng.below(2) == 0 {
                *data = services.into_bytes();
            } else {
                splice_in(data, 0, services.as_bytes());
            }
            "services"
        }
        20 => {
            let repeat = 1 + rng.below(2000);
            let items = vec!["fuzz-other.yaml"; repeat].join(", ");
            splice_in(data, 0, format!("include: [{items}]\n").as_bytes());
            "includes"
        }
        _ => {
            let key = "k".repeat(rng.size(5000));
            splice_in(data, line_start, format!("? {key}\n: v\n").as_bytes());
            "long key"
        }
    }
}

fn splice_in(data: &mut Vec<u8>, at: usize, chunk: &[u8]) {
    let at = at.min(data.len());
    if data.len() + chunk.len() > MAX_INPUT {
        return;
    }
    data.splice(at..at, chunk.iter().copied());
}

fn find_from(data: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    data.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
}

fn random_word(rng: &mut Rng) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz_-.<$:!&*";
    (0..1 + rng.below(12))
        .map(|_| char::from(*rng.pick(CHARS)))
        .collect()
}

/// `depth` levels of anchors, each a list of `width` aliases to the level before.
fn laughs(width: usize, depth: usize) -> String {
    let mut text = String::from("x-l0: &l0 [lol]\n");
    for level in 1..depth {
        let refs = vec![format!("*l{}", level - 1); width].join(", ");
        let _ = writeln!(text, "x-l{level}: &l{level} [{refs}]");
    }
    text
}

/// `depth` levels of anchors, each a mapping merging the level before `width` times.
fn merge_bomb(width: usize, depth: usize) -> String {
    let mut text = String::from("x-m0: &m0 {a: 1}\n");
    for level in 1..depth {
        let prev = level - 1;
        let fields: Vec<String> = (0..width).map(|i| format!("k{i}: *m{prev}")).collect();
        let _ = writeln!(
            text,
            "x-m{level}: &m{level} {{<<: [*m{prev}, *m{prev}], {}}}",
            fields.join(", ")
        );
    }
    text
}

/// An env file whose values double at each line.
fn doubling_env(rng: &mut Rng) -> Vec<u8> {
    let mut text = String::from("V0=0123456789abcdef\n");
    for i in 1..2 + rng.below(60) {
        let _ = writeln!(text, "V{i}=${{V{p}}}$V{p}", p = i - 1);
    }
    text.into_bytes()
}

/// Scalars the tree mutations write: the edges of every kind of value the reader parses.
const VALUES: &[&str] = &[
    "x",
    "",
    "0",
    "-1",
    "99999999999999999999",
    "1.5",
    "1e30",
    "true",
    "yes",
    "null",
    "~",
    "1m30s",
    "500ms",
    "999999999h",
    "1.5h",
    "512m",
    "1gb",
    "lots",
    "80",
    "80:80",
    "1-65535:1-65535",
    "127.0.0.1::80/udp",
    "[::1]:80:80",
    "./a:/b:ro",
    "v:/data:nocopy",
    "/dev/zero",
    "fuzz.env",
    "fuzz-other.yaml",
    "..",
    "${A:-x}",
    "$BIG$BIG",
    "${UNSET:?set it}",
    "$$",
    "${",
    "service_healthy",
    "CMD-SHELL",
    "0400",
    "host:1.2.3.4",
    "a=b",
    "on-failure:3",
    "web",
    "db",
    "default",
    "<<",
];

/// A corpus file parsed, changed as a tree (keys added from the schema, values replaced,
/// subtrees copied, services cloned with `extends` and `depends_on`), and written back.
fn tree_mutated(rng: &mut Rng, bytes: &[u8], what: &mut String) -> Vec<u8> {
    use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};
    let text = String::from_utf8_lossy(bytes);
    let Some(mut doc) = YamlLoader::load_from_str(&text)
        .ok()
        .and_then(|docs| docs.into_iter().next())
    else {
        return bytes.to_vec();
    };
    if !matches!(doc, Yaml::Hash(_)) {
        doc = Yaml::Hash(Default::default());
    }
    let scalar = |rng: &mut Rng| -> Yaml {
        let v = *rng.pick(VALUES);
        match rng.below(3) {
            0 => Yaml::from_str(v),
            _ => Yaml::String(v.to_string()),
        }
    };
    let key = |rng: &mut Rng| -> String {
        let lists: [&[&str]; 9] = [
            schema::SERVICE,
            schema::SERVICE,
            schema::TOP,
            schema::BATON_TOP,
            schema::DEPLOY,
            schema::BUILD,
            schema::HEALTHCHECK,
            schema::PORT,
            schema::MOUNT,
        ];
        match rng.below(6) {
            0 => format!("x-{}", random_word(rng)),
            1 => rng.pick(VALUES).to_string(),
            _ => {
                let list = *rng.pick(&lists);
                rng.pick(list).to_string()
            }
        }
    };
    for _ in 0..1 + rng.below(4) {
        let copy = random_node(rng, &mut doc.clone()).clone();
        let node = random_node(rng, &mut doc);
        match rng.below(7) {
            0 | 1 => {
                if let Yaml::Hash(h) = node {
                    let value = match rng.below(4) {
                        0 => copy,
                        1 => Yaml::Array(vec![scalar(rng), scalar(rng)]),
                        _ => scalar(rng),
                    };
                    h.insert(Yaml::String(key(rng)), value);
                    what.push_str(" tree:key");
                } else {
                    *node = scalar(rng);
                    what.push_str(" tree:value");
                }
            }
            2 => {
                *node = scalar(rng);
                what.push_str(" tree:value");
            }
            3 => {
                *node = copy;
                what.push_str(" tree:copy");
            }
            4 => {
                if let Yaml::Hash(h) = node {
                    let n = h.len();
                    if n > 0 {
                        let k = h.keys().nth(rng.below(n)).cloned();
                        if let Some(k) = k {
                            h.remove(&k);
                        }
                    }
                }
                what.push_str(" tree:remove");
            }
            5 => {
                if let Yaml::Array(a) = node {
                    a.push(scalar(rng));
                }
                what.push_str(" tree:item");
            }
            _ => {
                // Clone a service under a new name that extends and depends on others.
                if let Yaml::Hash(root) = &mut doc {
                    if let Some(Yaml::Hash(services)) =
                        root.get_mut(&Yaml::String("services".into()))
                    {
                        let names: Vec<Yaml> = services.keys().cloned().collect();
                        if let Some(base) = names.get(rng.below(names.len().max(1))).cloned() {
                            let mut svc = services.get(&base).cloned().unwrap_or(Yaml::Null);
                            if let Yaml::Hash(h) = &mut svc {
                                h.insert(Yaml::String("extends".into()), base.clone());
                                let dep = names[rng.below(names.len())].clone();
                                h.insert(Yaml::String("depends_on".into()), Yaml::Array(vec![dep]));
                            }
                            let name = format!("s{}", rng.below(1000));
                            services.insert(Yaml::String(name), svc);
                        }
                    }
                }
                what.push_str(" tree:service");
            }
        }
    }
    let mut out = String::new();
    if YamlEmitter::new(&mut out).dump(&doc).is_err() {
        return bytes.to_vec();
    }
    out.push('\n');
    out.into_bytes()
}

/// A node of `y` reached by a random walk from the root.
fn random_node<'y>(rng: &mut Rng, y: &'y mut yaml_rust2::Yaml) -> &'y mut yaml_rust2::Yaml {
    use yaml_rust2::Yaml;
    let n = match &*y {
        Yaml::Hash(h) => h.len(),
        Yaml::Array(a) => a.len(),
        _ => 0,
    };
    if n == 0 || rng.below(3) == 0 {
        return y;
    }
    let i = rng.below(n);
    match y {
        Yaml::Hash(h) => {
            let child = h.values_mut().nth(i).expect("i is below the length");
            random_node(rng, child)
        }
        Yaml::Array(a) => random_node(rng, &mut a[i]),
        other => other,
    }
}

/// The audit's inputs, whole, at the root of the corpus.
fn hostile_seeds() -> Vec<Case> {
    let case = |what: &str, text: String| Case {
        dir: PathBuf::new(),
        files: vec![(MAIN.into(), text.into_bytes())],
        env_file: false,
        what: format!("hostile: {what}"),
    };
    let mut chain = String::from("services:\n  s0:\n    image: x\n");
    for i in 1..=20_000 {
        let _ = write!(chain, "  s{i}:\n    extends: s{}\n", i - 1);
    }
    let n = 10_000;
    vec![
        case("billion laughs", laughs(9, 10)),
        case("merge keys", merge_bomb(10, 10)),
        case(
            "nested interpolation",
            format!(
                "services:\n  web:\n    image: \"{}x{}\"\n",
                "${A:-".repeat(n),
                "}".repeat(n)
            ),
        ),
        case("extends chain", chain),
        case(
            "include /dev/zero",
            "include: [/dev/zero]\nservices: {web: {image: x}}\n".into(),
        ),
        case(
            "second document",
            "services: {web: {image: x}}\n---\nservices: {db: {image: y}}\n".into(),
        ),
        case(
            "tab before name",
            "\tname: app\nservices:\n  web:\n    image: x\n".into(),
        ),
        case("bom", "\u{feff}services: {web: {image: x}}\n".into()),
        case("deep nesting", format!("x-n: {}\n", "[".repeat(1_000_000))),
        case(
            "deep block nesting",
            format!("x-n:\n  {}\n", "- ".repeat(400_000)),
        ),
    ]
}
