//! CSV as spreadsheets expect it: UTF-8 with a BOM (so Excel shows Hangul team names), RFC 4180
//! quoting, and cells that would start a formula neutralised (OWASP CSV injection guidance).

/// Builds one CSV file in memory; outputs are small enough and must be written atomically anyway.
pub struct CsvBuilder {
    out: String,
}

impl CsvBuilder {
    pub fn new(header: &[&str]) -> Self {
        let mut builder = CsvBuilder { out: String::from('\u{feff}') };
        builder.row(header.iter().copied());
        builder
    }

    pub fn row<'a>(&mut self, cells: impl IntoIterator<Item = &'a str>) {
        for (i, cell) in cells.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            // Most cells need neither neutralising nor quoting: copied as they are.
            if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) || cell.contains([',', '"', '\n', '\r']) {
                self.out.push_str(&cell_text(cell));
            } else {
                self.out.push_str(cell);
            }
        }
        // CRLF: RFC 4180, and what Excel writes.
        self.out.push_str("\r\n");
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out.into_bytes()
    }
}

/// A CSV written row by row into `out`, in [`CsvBuilder`]'s format, for files too large to hold.
pub struct CsvWriter<'a> {
    out: &'a mut dyn std::io::Write,
    row: CsvBuilder,
}

impl<'a> CsvWriter<'a> {
    pub fn new(out: &'a mut dyn std::io::Write, header: &[&str]) -> std::io::Result<Self> {
        let mut writer = CsvWriter { out, row: CsvBuilder::new(header) };
        writer.drain()?;
        Ok(writer)
    }

    pub fn row<'c>(&mut self, cells: impl IntoIterator<Item = &'c str>) -> std::io::Result<()> {
        self.row.row(cells);
        self.drain()
    }

    /// Writes the buffered row out, keeping the buffer's capacity.
    fn drain(&mut self) -> std::io::Result<()> {
        self.out.write_all(self.row.out.as_bytes())?;
        self.row.out.clear();
        Ok(())
    }
}

/// An identifier of digits (an AWS account ID) as a cell a spreadsheet keeps as text: Excel and
/// LibreOffice read a bare `012345678901` as a number (`1.23457E+10`, the leading zero gone);
/// `="012345678901"` evaluates to the text itself. Anything else is written as it is.
pub fn text_id(id: &str) -> String {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        format!("=\"{id}\"")
    } else {
        id.to_string()
    }
}

/// The ID a [`text_id`] cell stands for (`="012345678901"` -> `012345678901`); any other cell as
/// it is.
pub fn id_of(cell: &str) -> &str {
    cell.strip_prefix("=\"").and_then(|c| c.strip_suffix('"')).filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())).unwrap_or(cell)
}

/// Whether `cell` is `text_id`'s form: a formula that can only be its digits, so not neutralised.
fn is_text_id(cell: &str) -> bool {
    id_of(cell).len() != cell.len()
}

/// A cell as written: formula triggers get a leading `'`, then RFC 4180 quoting where needed.
/// Plain numbers such as `-12.50` are left alone: they are data, not formulas; so is `text_id`'s
/// `="<digits>"`, which evaluates to its digits and nothing else.
pub fn cell_text(cell: &str) -> String {
    let starts_formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_plain_number(cell) && !is_text_id(cell);
    let cell = if starts_formula { format!("'{cell}") } else { cell.to_string() };
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

fn is_plain_number(cell: &str) -> bool {
    let digits = cell.strip_prefix(['-', '+']).unwrap_or(cell);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.') && digits.bytes().filter(|b| *b == b'.').count() <= 1 && digits.bytes().any(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutralises_formulas_but_not_negative_amounts() {
        assert_eq!(cell_text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell_text("+1+1"), "'+1+1");
        assert_eq!(cell_text("-12.50"), "-12.50");
        assert_eq!(cell_text("\tx"), "'\tx");
        assert_eq!(cell_text("검색"), "검색");
        assert_eq!(cell_text("a,b"), "\"a,b\"");
        // An account ID kept as text: quoted (it holds quotes), not neutralised.
        assert_eq!(cell_text(&text_id("012345678901")), "\"=\"\"012345678901\"\"\"");
        assert_eq!(text_id("on-prem"), "on-prem");
        assert_eq!(cell_text("=\"1\"+cmd"), "\"'=\"\"1\"\"+cmd\"");
    }

    #[test]
    fn starts_with_a_bom_and_uses_crlf() {
        let mut b = CsvBuilder::new(&["team", "total"]);
        b.row(["검색", "1.00"]);
        let text = String::from_utf8(b.into_bytes()).unwrap();
        assert_eq!(text, "\u{feff}team,total\r\n검색,1.00\r\n");
    }
}

/// Reads a CSV this module wrote (BOM, RFC 4180 quoting, neutralised formulas) back into rows
/// of cells as they were given: what the report reads from a published month.
pub fn read_rows(text: &str) -> Vec<Vec<String>> {
    let text = text.trim_start_matches('\u{feff}');
    let mut rows = Vec::new();
    let (mut row, mut cell, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(unneutralise(std::mem::take(&mut cell))),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(unneutralise(std::mem::take(&mut cell)));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(unneutralise(cell));
        rows.push(row);
    }
    rows
}

/// Undoes [`cell_text`]'s formula guard, and [`text_id`].
fn unneutralise(cell: String) -> String {
    if is_text_id(&cell) {
        return cell[2..cell.len() - 1].to_string();
    }
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest.to_string(),
        _ => cell,
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    #[test]
    fn reads_back_what_it_writes() {
        let cells = ["=cmd", "a,b", "say \"hi\"", "-12.50", "검색", ""];
        let mut csv = CsvBuilder::new(&["h1", "h2", "h3", "h4", "h5", "h6", "h7"]);
        let id = text_id("012345678901");
        csv.row(cells.iter().copied().chain([id.as_str()]));
        let rows = read_rows(&String::from_utf8(csv.into_bytes()).unwrap());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1][..6], cells.map(str::to_string));
        assert_eq!(rows[1][6], "012345678901", "an ID reads back as its digits");
    }
}
