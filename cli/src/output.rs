//! Command output as the `consul` CLI writes it: aligned columns, stdout that tolerates a
//! closed pipe, and failure messages on stderr with exit code 1.

use std::fmt;
use std::io::Write as _;

/// Aligns rows into columns two spaces apart, as Consul's `columnize` does: each column as
/// wide as its widest cell, the last column unpadded, trailing spaces trimmed. No final
/// newline.
pub(crate) fn columnize(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let lines: Vec<String> = rows
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    // `{:<w$}` pads by characters, as the widths count them.
                    line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                } else {
                    line.push_str(cell);
                }
            }
            line.trim_end().to_string()
        })
        .collect();
    lines.join("\n")
}

/// Writes command output to stdout. A closed pipe (`... | head`) ends output quietly.
pub(crate) fn out(bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(bytes.as_ref())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Prints a message to stderr and gives exit code 1, as `consul` commands fail.
pub(crate) fn fail(message: impl fmt::Display) -> anyhow::Result<i32> {
    eprintln!("{message}");
    Ok(1)
}

/// [`out`] plus a newline.
pub(crate) fn outln(text: &str) -> anyhow::Result<()> {
    out(format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_two_spaces_apart() {
        let rows = vec![
            vec!["Node".to_string(), "Address".into(), "DC".into()],
            vec!["a-long-name".to_string(), "10.0.0.1".into(), "dc1".into()],
            vec!["b".to_string(), "".into(), "".into()],
        ];
        assert_eq!(
            columnize(&rows),
            "Node         Address   DC\na-long-name  10.0.0.1  dc1\nb"
        );
        assert_eq!(columnize(&[]), "");
    }
}
