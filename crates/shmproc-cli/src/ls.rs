//! `shmproc ls`: every shmproc segment on the machine, one row each.

use std::fmt::Write as _;
use std::process::ExitCode;

use shmproc_shm::cleanup;

use crate::report::{self, SegmentReport, human_bytes};

/// Lists the segments [`cleanup::list`] finds (those whose names start with
/// `prefix`, when given), as a table or as JSON.
pub(crate) fn run(json: bool, prefix: Option<&str>) -> ExitCode {
    let in_use = cleanup::in_use();
    let reports: Vec<SegmentReport> = cleanup::list()
        .iter()
        .filter(|s| prefix.is_none_or(|p| s.name.starts_with(p)))
        .map(|s| report::build(s, &in_use, false))
        .collect();
    if json {
        crate::emit_json(&reports);
    } else {
        crate::emit(&table(&reports));
    }
    ExitCode::SUCCESS
}

/// The table: a header line and one row per segment, columns padded.
fn table(reports: &[SegmentReport]) -> String {
    if reports.is_empty() {
        return "no shmproc segments in /dev/shm\n".to_owned();
    }
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let dash = |s: Option<String>| s.unwrap_or_else(|| "-".to_owned());
    let mut rows: Vec<[String; 9]> = vec![
        [
            "NAME", "KIND", "TYPE", "SIZE", "CREATOR", "ALIVE", "PERSIST", "STATUS", "FILL",
        ]
        .map(str::to_owned),
    ];
    for r in reports {
        rows.push([
            r.name.clone(),
            dash(r.kind.clone()),
            dash(r.element_type.clone()),
            dash(r.size.map(human_bytes)),
            dash(r.creator_pid.map(|p| p.to_string())),
            yes_no(r.creator_alive).to_owned(),
            yes_no(r.error.is_none().then_some(r.persistent)).to_owned(),
            r.status(),
            r.fill_text(),
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
