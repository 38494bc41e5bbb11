//! Output helpers shared by commands: aligned text tables and JSON on stdout.

use serde::Serialize;
use std::io::Write;

/// A plain text table with a header row; columns are padded to their widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row (missing cells print empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Adds rows (missing cells print empty).
    pub fn rows_from(&mut self, rows: Vec<Vec<String>>) {
        self.rows.extend(rows);
    }

    /// Number of data rows (without the header).
    pub fn len(&self) -> usize {
        self.rows.len() - 1
    }

    /// True when there are no data rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Renders the table; the last column is not padded.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; cols];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                } else {
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Asks `question` on the terminal; true for a typed yes.
pub fn ask_yes(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, Write};
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Version of every `--json` document's shape. Raised when a field is removed, renamed or
/// changes meaning (adding a field does not raise it), so scripts can check what they read.
pub const JSON_SCHEMA: u32 = 1;

/// A document with the `schema` field first, then the document's own fields.
#[derive(Serialize)]
struct Versioned<'a, T: Serialize> {
    schema: u32,
    #[serde(flatten)]
    doc: &'a T,
}

/// Prints one JSON document (a struct) as pretty JSON on stdout, with `"schema": 1` first.
pub fn print_json<T: Serialize>(doc: &T) -> anyhow::Result<()> {
    write_json(&Versioned {
        schema: JSON_SCHEMA,
        doc,
    })
}

/// Prints a JSON document that is a list (kept a list for existing scripts): each element
/// carries `"schema": 1` first.
pub fn print_json_list<T: Serialize>(items: &[T]) -> anyhow::Result<()> {
    let versioned: Vec<Versioned<'_, T>> = items
        .iter()
        .map(|doc| Versioned {
            schema: JSON_SCHEMA,
            doc,
        })
        .collect();
    write_json(&versioned)
}

fn write_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    // Buffered: stdout is line-buffered, and pretty JSON has a line per field (100,000 listed
    // artifacts were a third of `list --json`'s time in write calls).
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// [`print_json_list`] written an element at a time, for lists too long to hold: the same
/// document (byte for byte), each element with `"schema": 1` first. [`JsonList::finish`]
/// closes it.
pub struct JsonList<W: Write = std::io::BufWriter<std::io::StdoutLock<'static>>> {
    out: W,
    empty: bool,
}

impl JsonList {
    /// Opens the list on stdout (buffered).
    pub fn start() -> anyhow::Result<JsonList> {
        JsonList::on(std::io::BufWriter::new(std::io::stdout().lock()))
    }
}

impl<W: Write> JsonList<W> {
    /// Opens the list on `out`.
    pub fn on(mut out: W) -> anyhow::Result<JsonList<W>> {
        out.write_all(b"[")?;
        Ok(JsonList { out, empty: true })
    }

    /// Writes one element, indented as a pretty-printed list's.
    pub fn item<T: Serialize>(&mut self, doc: &T) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&Versioned {
            schema: JSON_SCHEMA,
            doc,
        })?;
        self.out.write_all(if self.empty { b"\n" } else { b",\n" })?;
        self.empty = false;
        for (i, line) in text.lines().enumerate() {
            if i > 0 {
                self.out.write_all(b"\n")?;
            }
            self.out.write_all(b"  ")?;
            self.out.write_all(line.as_bytes())?;
        }
        Ok(())
    }

    /// Closes the list (and the line), flushes it and gives back the writer.
    pub fn finish(mut self) -> anyhow::Result<W> {
        self.out.write_all(if self.empty { b"]\n" } else { b"\n]\n" })?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Formats a byte count for humans (`996 B`, `1.5 KiB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["NODE", "STATUS"]);
        t.row(vec!["validator-1".into(), "ok".into()]);
        t.row(vec!["v2".into(), "failed: x".into()]);
        assert_eq!(
            t.render(),
            "NODE         STATUS\nvalidator-1  ok\nv2           failed: x\n"
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn json_documents_carry_the_schema_first() {
        #[derive(Serialize)]
        struct Doc {
            b: u8,
            a: &'static str,
        }
        let doc = Doc { b: 1, a: "x" };
        let text = serde_json::to_string(&Versioned {
            schema: JSON_SCHEMA,
            doc: &doc,
        })
        .unwrap();
        assert_eq!(
            text, r#"{"schema":1,"b":1,"a":"x"}"#,
            "schema first, field order kept"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(996), "996 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }
}
