//! Real-file tests of the file follower: start at the end or the start, a
//! partial last line, logrotate's create and copytruncate modes, a file and a
//! directory that do not exist yet, an over-long line, stopping. Each test
//! works in its own temporary directory. Not here: the journal and stdin
//! (see source_stream.rs).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use autoblock_daemon::source::{
    follow_file, FileConfig, ReadFrom, Rotation, SourceEvent, SourceHandle,
};
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(300);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

/// The next `n` lines (other events are collected into `others`).
async fn lines(rx: &mut Receiver<SourceEvent>, n: usize, others: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {out:?}, other events {others:?}"))
            .expect("source ended");
        match ev {
            SourceEvent::Line(l) => out.push(String::from_utf8(l.bytes).expect("utf-8")),
            other => others.push(format!("{other:?}")),
        }
    }
    out
}

/// Asserts that no further line arrives for a while.
async fn no_more_lines(rx: &mut Receiver<SourceEvent>) {
    let deadline = tokio::time::Instant::now() + QUIET;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return,
            Ok(Some(SourceEvent::Line(l))) => {
                panic!("unexpected line {:?}", String::from_utf8_lossy(&l.bytes))
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("source ended"),
        }
    }
}

fn follow(path: &Path, from: ReadFrom) -> (SourceHandle, Receiver<SourceEvent>) {
    follow_file(FileConfig::new(path).read_from(from)).expect("follow")
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn starts_at_end_and_holds_partial_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("secure");
    append(&p, "old 1\nold 2\n");
    rt().block_on(async {
        let (h, mut rx) = follow(&p, ReadFrom::End);
        append(&p, "new 1\nnew ");
        let mut o = Vec::new();
        assert_eq!(lines(&mut rx, 1, &mut o).await, strs(&["new 1"]));
        no_more_lines(&mut rx).await;
        append(&p, "2\n");
        assert_eq!(lines(&mut rx, 1, &mut o).await, strs(&["new 2"]));
        h.stop();
    });
}

#[test]
fn start_replays_and_positions_are_resume_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("auth.log");
    append(&p, "a\nbb\n");
    rt().block_on(async {
        let (h, mut rx) = follow(&p, ReadFrom::Start);
        let mut got = Vec::new();
        while got.len() < 2 {
            if let Some(SourceEvent::Line(l)) = tokio::time::timeout(WAIT, rx.recv())
                .await
                .expect("line in time")
            {
                got.push((l.pos.line_no(), l.pos.offset()));
            }
        }
        assert_eq!(got, vec![(1, 2), (2, 5)]);
        h.stop();
    });
}

#[test]
fn create_mode_rotation_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("secure");
    let rotated = dir.path().join("secure.1");
    append(&p, "before\n");
    rt().block_on(async {
        let (h, mut rx) = follow(&p, ReadFrom::End);
        // The writer keeps its descriptor across the rename, as syslog does
        // until it is told to reopen.
        let mut writer = OpenOptions::new().append(true).open(&p).expect("writer");
        writer.write_all(b"a1\na2\n").expect("write");
        let mut o = Vec::new();
        assert_eq!(lines(&mut rx, 2, &mut o).await, strs(&["a1", "a2"]));
        std::fs::rename(&p, &rotated).expect("rename");
        writer.write_all(b"a3\n").expect("write");
        File::create(&p).expect("create new");
        // Still written to the old file after the new one exists.
        writer.write_all(b"a4\na5 without newline").expect("write");
        assert_eq!(lines(&mut rx, 2, &mut o).await, strs(&["a3", "a4"]));
        // The writer reopens: from now on the new file.
        drop(writer);
        append(&p, "b1\nb2\n");
        assert_eq!(
            lines(&mut rx, 3, &mut o).await,
            strs(&["a5 without newline", "b1", "b2"])
        );
        no_more_lines(&mut rx).await;
        assert!(
            o.iter()
                .any(|e| e.contains("Removed") || e.contains("Replaced")),
            "rotation reported: {o:?}"
        );
        // A second rotation works the same.
        std::fs::rename(&p, dir.path().join("secure.2")).expect("rename");
        append(&p, "c1\n");
        assert_eq!(lines(&mut rx, 1, &mut o).await, strs(&["c1"]));
        no_more_lines(&mut rx).await;
        h.stop();
    });
}

/// The old file's partial last line comes out when the writer's first
/// write lands in the new file, however that write and the follower's wake-up
/// interleave (the write racing the follower's own check once lost it until
/// the next rotation). Many quick rotations give the interleavings a chance.
#[test]
fn partial_line_of_the_rotated_file_comes_before_the_new_file_every_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("secure");
    append(&p, "");
    rt().block_on(async {
        let (h, mut rx) = follow(&p, ReadFrom::End);
        let mut o = Vec::new();
        for round in 0..200 {
            let mut writer = OpenOptions::new().append(true).open(&p).expect("writer");
            std::fs::rename(&p, dir.path().join(format!("secure.{round}"))).expect("rename");
            File::create(&p).expect("create new");
            writer
                .write_all(format!("full {round}\npartial {round}").as_bytes())
                .expect("write");
            drop(writer);
            append(&p, &format!("next {round}\n"));
            assert_eq!(
                lines(&mut rx, 3, &mut o).await,
                vec![
                    format!("full {round}"),
                    format!("partial {round}"),
                    format!("next {round}")
                ],
                "round {round}"
            );
        }
        no_more_lines(&mut rx).await;
        h.stop();
    });
}

#[test]
fn copytruncate_rotation_reads_the_file_again_from_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("secure");
    rt().block_on(async {
        let (h, mut rx) = follow(&p, ReadFrom::End);
        append(&p, "line one is long enough\nline two is long enough\n");
        let mut o = Vec::new();
        assert_eq!(lines(&mut rx, 2, &mut o).await.len(), 2);
        std::fs::copy(&p, dir.path().join("secure.1")).expect("copy");
        OpenOptions::new()
            .write(true)
            .open(&p)
            .expect("open")
            .set_len(0)
            .expect("truncate");
        append(&p, "x1\nx2\n");
        assert_eq!(lines(&mut rx, 2, &mut o).await, strs(&["x1", "x2"]));
        no_more_lines(&mut rx).await;
        assert!(
            o.iter()
                .any(|e| e.contains(&format!("{:?}", Rotation::Truncated))),
            "truncation reported: {o:?}"
        );
        h.stop();
    });
}

#[test]
fn file_that_does_not_exist_yet_is_read_from_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("later.log");
    rt().block_on(async {
        let (h, mut rx) = follow(&p, ReadFrom::End);
        no_more_lines(&mut rx).await;
        append(&p, "first\nsecond\n");
        let mut o = Vec::new();
        assert_eq!(lines(&mut rx, 2, &mut o).await, strs(&["first", "second"]));
        // Deleted and created again.
        std::fs::remove_file(&p).expect("remove");
        append(&p, "third\n");
        assert_eq!(lines(&mut rx, 1, &mut o).await, strs(&["third"]));
        no_more_lines(&mut rx).await;
        h.stop();
    });
}

#[test]
fn directory_that_does_not_exist_yet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("log");
    let p = sub.join("secure");
    rt().block_on(async {
        let (h, mut rx) = follow(&p, ReadFrom::End);
        std::fs::create_dir(&sub).expect("mkdir");
        append(&p, "hello\n");
        let mut o = Vec::new();
        assert_eq!(lines(&mut rx, 1, &mut o).await, strs(&["hello"]));
        append(&p, "again\n");
        assert_eq!(lines(&mut rx, 1, &mut o).await, strs(&["again"]));
        h.stop();
    });
}

#[test]
fn ten_megabyte_line_is_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("secure");
    append(&p, "");
    rt().block_on(async {
        let (h, mut rx) = follow(&p, ReadFrom::End);
        let big = "y".repeat(10 << 20);
        append(&p, &big);
        append(&p, "\nafter\n");
        let mut too_long = None;
        let mut got = Vec::new();
        while got.is_empty() {
            match tokio::time::timeout(WAIT, rx.recv())
                .await
                .expect("in time")
            {
                Some(SourceEvent::TooLong { len, pos }) => too_long = Some((len, pos.offset())),
                Some(SourceEvent::Line(l)) => got.push(l.bytes),
                Some(_) => {}
                None => panic!("ended"),
            }
        }
        assert_eq!(too_long, Some((10 << 20, (10 << 20) + 1)));
        assert_eq!(got, vec![b"after".to_vec()]);
        h.stop();
    });
}

#[test]
fn stopping_ends_the_thread_and_the_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("secure");
    rt().block_on(async {
        let (h, mut rx) = follow(&p, ReadFrom::End);
        let t = std::time::Instant::now();
        h.stop();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "stop took {:?}",
            t.elapsed()
        );
        let end = tokio::time::timeout(WAIT, async {
            while let Some(ev) = rx.recv().await {
                assert!(!matches!(ev, SourceEvent::Line(_)));
            }
        })
        .await;
        assert!(end.is_ok(), "channel closed after stop");
    });
}
