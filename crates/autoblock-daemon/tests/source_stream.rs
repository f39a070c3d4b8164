//! The stream source (standard input or any reader): lines, a final line
//! without newline, over-long lines, end of stream. Not here: followed files
//! (source_file.rs).

use std::io::Cursor;

use autoblock_daemon::source::{read_reader, SourceEvent};

#[test]
fn stream_lines_then_eof() {
    let mut input = b"one\ntwo\n".to_vec();
    input.extend(std::iter::repeat_n(b'z', 100));
    input.extend_from_slice(b"\nlast");
    let (_h, mut rx) = read_reader("test", Cursor::new(input), 50, 4).expect("start");
    let mut got = Vec::new();
    while let Some(ev) = rx.blocking_recv() {
        got.push(match ev {
            SourceEvent::Line(l) => format!(
                "{}@{}:{}",
                String::from_utf8_lossy(&l.bytes),
                l.pos.line_no(),
                l.pos.offset()
            ),
            SourceEvent::TooLong { len, pos } => format!("<{len}>@{}", pos.line_no()),
            SourceEvent::Eof => "EOF".into(),
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(got, ["one@1:4", "two@2:8", "<100>@3", "last@4:113", "EOF"]);
}
