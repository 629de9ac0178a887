//! `docs/format.md` against the code: every table of the format is read from the document and
//! held to the constants the code writes with, so a change to either one alone fails here.

use std::collections::BTreeMap;

use relstore::__private as p;
use relstore::FORMAT_VERSION;

fn format_md() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/format.md"))
        .expect("docs/format.md")
}

/// The rows of the first table after `heading`: field name → (offset, size, value column).
fn table(doc: &str, heading: &str) -> BTreeMap<String, (usize, String, String)> {
    let section = doc
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let mut rows = BTreeMap::new();
    for line in section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Ok(offset) = cells[1].parse::<usize>() else {
            continue;
        };
        rows.insert(
            cells[3].to_string(),
            (offset, cells[2].to_string(), cells[4].to_string()),
        );
    }
    assert!(!rows.is_empty(), "no rows under {heading:?}");
    rows
}

/// Checks each `(field, offset, size)` against the table, and that the table has no other row.
fn check(rows: &BTreeMap<String, (usize, String, String)>, want: &[(&str, usize, &str)]) {
    for (field, offset, size) in want {
        let (o, s, _) = rows
            .get(*field)
            .unwrap_or_else(|| panic!("format.md lacks field {field:?}: {rows:?}"));
        assert_eq!((*o, s.as_str()), (*offset, *size), "field {field}");
    }
    assert_eq!(
        rows.len(),
        want.len(),
        "format.md has other fields: {rows:?}"
    );
}

#[test]
fn the_segment_header_table_matches_the_constants() {
    let doc = format_md();
    let heading = format!("### Segment header ({} bytes)", p::SEGMENT_HEADER_LEN);
    let rows = table(&doc, &heading);
    let size = |from: usize, to: usize| (to - from).to_string();
    check(
        &rows,
        &[
            ("magic", 0, &size(0, p::SEG_OFF_VERSION)),
            (
                "version",
                p::SEG_OFF_VERSION,
                &size(p::SEG_OFF_VERSION, p::SEG_OFF_ID),
            ),
            (
                "segment id",
                p::SEG_OFF_ID,
                &size(p::SEG_OFF_ID, p::SEG_OFF_RESERVED),
            ),
            (
                "reserved",
                p::SEG_OFF_RESERVED,
                &size(p::SEG_OFF_RESERVED, p::SEG_OFF_CRC),
            ),
            (
                "header CRC",
                p::SEG_OFF_CRC,
                &size(p::SEG_OFF_CRC, p::SEGMENT_HEADER_LEN),
            ),
        ],
    );
    let magic = std::str::from_utf8(&p::SEGMENT_MAGIC).unwrap();
    assert!(rows["magic"].2.contains(&format!("`{magic}`")));
    assert!(rows["version"]
        .2
        .starts_with(&format!("`{}`", p::SEGMENT_VERSION)));
    assert!(rows["header CRC"]
        .2
        .contains(&format!("bytes 0..{}", p::SEG_OFF_CRC)));
    // And the encoder writes what the table says.
    let h = p::encode_segment_header(7);
    assert_eq!(h[..p::SEG_OFF_VERSION], p::SEGMENT_MAGIC);
    assert_eq!(h[p::SEG_OFF_ID..p::SEG_OFF_RESERVED], 7u32.to_le_bytes());
    assert!(h[p::SEG_OFF_RESERVED..p::SEG_OFF_CRC]
        .iter()
        .all(|&b| b == 0));
}

#[test]
fn the_chunk_record_table_matches_the_constants() {
    let doc = format_md();
    let heading = format!("### Chunk record ({}-byte header + payload)", p::HEADER_LEN);
    let rows = table(&doc, &heading);
    let size = |from: usize, to: usize| (to - from).to_string();
    check(
        &rows,
        &[
            ("magic", 0, &size(0, p::OFF_VERSION)),
            (
                "version",
                p::OFF_VERSION,
                &size(p::OFF_VERSION, p::OFF_KIND),
            ),
            ("kind", p::OFF_KIND, &size(p::OFF_KIND, p::OFF_RESERVED)),
            (
                "reserved",
                p::OFF_RESERVED,
                &size(p::OFF_RESERVED, p::OFF_LEN),
            ),
            ("payload length", p::OFF_LEN, &size(p::OFF_LEN, p::OFF_CRC)),
            ("payload CRC", p::OFF_CRC, &size(p::OFF_CRC, p::OFF_HASH)),
            ("BLAKE3", p::OFF_HASH, &size(p::OFF_HASH, p::OFF_HEADER_CRC)),
            (
                "header CRC",
                p::OFF_HEADER_CRC,
                &size(p::OFF_HEADER_CRC, p::HEADER_LEN),
            ),
            ("payload", p::HEADER_LEN, "len"),
        ],
    );
    let magic = std::str::from_utf8(&p::RECORD_MAGIC).unwrap();
    assert!(rows["magic"].2.contains(&format!("`{magic}`")));
    assert_eq!(rows["version"].2, format!("`{}`", p::RECORD_VERSION));
    assert!(rows["kind"]
        .2
        .starts_with(&format!("`{}` = content-defined chunk", p::KIND_CHUNK)));
    assert!(rows["header CRC"]
        .2
        .contains(&format!("bytes 0..{}", p::OFF_HEADER_CRC)));
    // And the encoder writes what the table says.
    let payload = b"chunk";
    let mut rec = Vec::new();
    let id = relstore::ChunkId::of(payload);
    p::encode_record(&mut rec, payload, crc32fast::hash(payload), &id);
    assert_eq!(rec[..p::OFF_VERSION], p::RECORD_MAGIC);
    assert_eq!(rec[p::OFF_LEN..p::OFF_CRC], 5u32.to_le_bytes());
    assert_eq!(&rec[p::OFF_HASH..p::OFF_HEADER_CRC], id.as_bytes());
    assert_eq!(&rec[p::HEADER_LEN..], payload);
}

#[test]
fn the_index_section_matches_the_tables_the_codec_and_the_page_size() {
    let doc = format_md();
    // Every table the index opens is documented, and no other.
    let section = doc
        .split("| tree | key | value |")
        .nth(1)
        .expect("tree table");
    let documented: Vec<&str> = section
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').nth(1).unwrap().trim().trim_matches('`'))
        .collect();
    let mut want: Vec<&str> = p::TABLES.to_vec();
    let mut got = documented.clone();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "the trees in format.md");
    assert!(
        doc.contains(&format!("one **version byte (`{}`)**", p::CODEC_VERSION)),
        "the codec's version byte"
    );
    let per_page = format!(
        "pages of {},{:03} `ChunkRef`s",
        p::CHUNKS_PER_PAGE / 1000,
        p::CHUNKS_PER_PAGE % 1000
    );
    assert!(doc.contains(&per_page), "{per_page}");
    assert!(doc.contains(&format!("format version {FORMAT_VERSION})")));
    assert!(doc.contains(&format!("\"version\": {FORMAT_VERSION},")));
}
