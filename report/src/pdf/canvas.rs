//! A page to draw on, in points from the top-left corner (PDF's own origin is bottom-left): text
//! measured with the embedded font's advances (so right-aligned figures line up and long names
//! are cut to fit, Hangul included), rectangles and lines. Everything the report draws goes
//! through here, as printpdf operations.

use printpdf::{Color, FontId, LinePoint, Op, PaintMode, ParsedFont, PdfFontHandle, Point, Polygon, PolygonRing, Pt, Rgb, TextItem, WindingOrder};

/// A4 portrait, in points.
pub const PAGE_WIDTH: f32 = 595.0;
pub const PAGE_HEIGHT: f32 = 842.0;
pub const MARGIN: f32 = 42.0;

/// The report's two faces: NanumSquare Regular and Bold (OFL, `report/fonts/`), which cover
/// Latin and Hangul. Named here, not by printpdf's random ids, so the bytes are reproducible.
pub struct Fonts {
    pub regular: ParsedFont,
    pub bold: ParsedFont,
}

pub const REGULAR: &str = "FR";
pub const BOLD: &str = "FB";

static REGULAR_TTF: &[u8] = include_bytes!("../../fonts/NanumSquareR.ttf");
static BOLD_TTF: &[u8] = include_bytes!("../../fonts/NanumSquareB.ttf");

impl Fonts {
    pub fn load() -> Result<Fonts, String> {
        let parse = |bytes: &[u8], name: &str| ParsedFont::from_bytes(bytes, 0, &mut Vec::new()).ok_or_else(|| format!("the embedded font {name} could not be read"));
        Ok(Fonts { regular: parse(REGULAR_TTF, "NanumSquareR.ttf")?, bold: parse(BOLD_TTF, "NanumSquareB.ttf")? })
    }

    /// The same faces cut down to the glyphs of `chars` (and .notdef), so the PDF embeds a few
    /// kilobytes of each font instead of all 11,000 Hangul syllables. Widths and the
    /// character map come from the subset, so text still measures and extracts as before.
    pub fn subset(&self, chars: &std::collections::BTreeSet<char>) -> Result<Fonts, String> {
        let cut = |font: &ParsedFont, name: &str| -> Result<ParsedFont, String> {
            let mut ids: Vec<u16> = chars.iter().filter_map(|c| font.lookup_glyph_index(*c as u32)).filter(|g| *g != 0).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.insert(0, 0);
            let scope = allsorts::binary::read::ReadScope::new(&font.original_bytes);
            let data = scope.read::<allsorts::font_data::FontData<'_>>().map_err(|e| format!("{name}: {e}"))?;
            let provider = data.table_provider(0).map_err(|e| format!("{name}: {e}"))?;
            let bytes = allsorts::subset::subset(&provider, &ids, &allsorts::subset::SubsetProfile::Minimal, allsorts::subset::CmapTarget::Unicode).map_err(|e| format!("{name}: subsetting: {e}"))?;
            ParsedFont::from_bytes(&bytes, 0, &mut Vec::new()).ok_or_else(|| format!("{name}: the subset could not be read back"))
        };
        Ok(Fonts { regular: cut(&self.regular, "NanumSquareR.ttf")?, bold: cut(&self.bold, "NanumSquareB.ttf")? })
    }

    fn face(&self, bold: bool) -> &ParsedFont {
        if bold {
            &self.bold
        } else {
            &self.regular
        }
    }

    /// Width of `text` at `size` points.
    pub fn width(&self, text: &str, size: f32, bold: bool) -> f32 {
        let font = self.face(bold);
        let units: u32 = text.chars().map(|c| font.lookup_glyph_index(c as u32).and_then(|g| font.get_glyph_width(g)).unwrap_or(font.units_per_em / 2) as u32).sum();
        units as f32 * size / font.units_per_em as f32
    }

    /// `text` broken at spaces into lines of at most `max` points (a word longer than a line is
    /// a line of its own, cut by `fit` where it is drawn).
    pub fn wrap(&self, text: &str, size: f32, bold: bool, max: f32) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in text.split(' ') {
            let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
            if self.width(&candidate, size, bold) > max && !line.is_empty() {
                lines.push(std::mem::replace(&mut line, word.to_string()));
            } else {
                line = candidate;
            }
        }
        lines.push(line);
        lines
    }

    /// `text` cut (with an ellipsis) to fit `max` points.
    pub fn fit(&self, text: &str, size: f32, bold: bool, max: f32) -> String {
        if self.width(text, size, bold) <= max {
            return text.to_string();
        }
        let mut cut: String = text.to_string();
        while !cut.is_empty() && self.width(&format!("{cut}…"), size, bold) > max {
            cut.pop();
        }
        format!("{cut}…")
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rgb8(pub u8, pub u8, pub u8);

impl Rgb8 {
    fn color(self) -> Color {
        Color::Rgb(Rgb { r: self.0 as f32 / 255.0, g: self.1 as f32 / 255.0, b: self.2 as f32 / 255.0, icc_profile: None })
    }
}

pub const INK: Rgb8 = Rgb8(33, 37, 41);
pub const MUTED: Rgb8 = Rgb8(108, 117, 125);
pub const RULE: Rgb8 = Rgb8(206, 212, 218);
pub const GRID: Rgb8 = Rgb8(233, 236, 239);
pub const PANEL: Rgb8 = Rgb8(245, 247, 250);
pub const UP: Rgb8 = Rgb8(201, 42, 42);
pub const DOWN: Rgb8 = Rgb8(43, 138, 62);

#[derive(Clone, Copy, PartialEq)]
pub enum Align {
    Left,
    Right,
    Center,
}

/// One page's operations.
pub struct Page<'f> {
    pub fonts: &'f Fonts,
    pub ops: Vec<Op>,
}

impl<'f> Page<'f> {
    pub fn new(fonts: &'f Fonts) -> Self {
        Page { fonts, ops: Vec::new() }
    }

    /// Text with its baseline at `y` points from the top.
    pub fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, color: Rgb8, align: Align, text: &str) {
        if text.is_empty() {
            return;
        }
        let width = self.fonts.width(text, size, bold);
        let x = match align {
            Align::Left => x,
            Align::Right => x - width,
            Align::Center => x - width / 2.0,
        };
        self.ops.extend([
            Op::StartTextSection,
            Op::SetFillColor { col: color.color() },
            Op::SetFont { font: PdfFontHandle::External(FontId(if bold { BOLD } else { REGULAR }.into())), size: Pt(size) },
            Op::SetTextCursor { pos: Point { x: Pt(x), y: Pt(PAGE_HEIGHT - y) } },
            Op::ShowText { items: vec![TextItem::Text(text.to_string())] },
            Op::EndTextSection,
        ]);
    }

    /// A filled rectangle, its top-left corner at (`x`, `y`).
    pub fn rect(&mut self, x: f32, y: f32, width: f32, height: f32, color: Rgb8) {
        if width <= 0.0 || height <= 0.0 {
            return;
        }
        let (bottom, top) = (PAGE_HEIGHT - y - height, PAGE_HEIGHT - y);
        let corners = [(x, bottom), (x + width, bottom), (x + width, top), (x, top)];
        self.ops.push(Op::SetFillColor { col: color.color() });
        self.ops.push(Op::DrawPolygon {
            polygon: Polygon {
                rings: vec![PolygonRing { points: corners.iter().map(|(x, y)| LinePoint { p: Point { x: Pt(*x), y: Pt(*y) }, bezier: false }).collect() }],
                mode: PaintMode::Fill,
                winding_order: WindingOrder::NonZero,
            },
        });
    }

    /// A stroked polyline through `points` (top-left coordinates).
    pub fn line(&mut self, points: &[(f32, f32)], width: f32, color: Rgb8) {
        if points.len() < 2 {
            return;
        }
        self.ops.push(Op::SetOutlineColor { col: color.color() });
        self.ops.push(Op::SetOutlineThickness { pt: Pt(width) });
        self.ops.push(Op::DrawLine {
            line: printpdf::Line { points: points.iter().map(|(x, y)| LinePoint { p: Point { x: Pt(*x), y: Pt(PAGE_HEIGHT - *y) }, bezier: false }).collect(), is_closed: false },
        });
    }

    /// A small filled square, for legends and data points.
    pub fn dot(&mut self, x: f32, y: f32, size: f32, color: Rgb8) {
        self.rect(x - size / 2.0, y - size / 2.0, size, size, color);
    }
}
