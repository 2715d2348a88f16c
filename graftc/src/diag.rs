//! Diagnostics: what every phase reports, and how it is printed.
//!
//! Phases push [`Diagnostic`]s into a [`Diagnostics`] list and keep going, so one run reports
//! every independent mistake. Printing goes through `codespan-reporting`: the source line, a
//! caret under the span, the message and notes; colour only when stderr is a terminal.

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor};

/// A byte range of the source file.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span `start..end`.
    pub const fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Severity {
    /// The input is rejected.
    Error,
    /// The input is accepted but probably not what was meant.
    Warning,
}

/// One message about the source: where, what, and how to fix it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// One plain sentence.
    pub message: String,
    /// The span the caret goes under, with a short label.
    pub primary: (Span, String),
    /// Further spans worth showing (e.g. a declaration), with labels.
    pub secondary: Vec<(Span, String)>,
    /// Notes and hints printed under the source excerpt.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            primary: (span, String::new()),
            secondary: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A warning at `span`.
    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(span, message) }
    }

    /// Set the label under the caret.
    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.primary.1 = label.into();
        self
    }

    /// Point at another span too.
    pub fn also(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }

    /// Add a `help:` line.
    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.notes.push(format!("help: {}", hint.into()));
        self
    }

    /// Add a `note:` line.
    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(format!("note: {}", note.into()));
        self
    }
}

/// Diagnostics collected over a run, in the order found.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    /// Everything reported so far.
    pub list: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Report one.
    pub fn push(&mut self, d: Diagnostic) {
        self.list.push(d);
    }

    /// Number of errors (warnings do not count).
    pub fn error_count(&self) -> usize {
        self.list.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// Whether any error was reported.
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }
}

fn to_codespan(d: &Diagnostic, len: usize) -> CsDiagnostic<()> {
    // Spans come from the lexer, but clamp anyway: a bad span must not make printing fail.
    let clamp = |s: Span| s.start.min(len)..s.end.min(len).max(s.start.min(len));
    let base = match d.severity {
        Severity::Error => CsDiagnostic::error(),
        Severity::Warning => CsDiagnostic::warning(),
    };
    let mut labels = vec![Label::primary((), clamp(d.primary.0)).with_message(d.primary.1.clone())];
    for (s, l) in &d.secondary {
        labels.push(Label::secondary((), clamp(*s)).with_message(l.clone()));
    }
    base.with_message(d.message.clone()).with_labels(labels).with_notes(d.notes.clone())
}

/// Render diagnostics as plain text (what golden tests compare).
pub fn render_plain(file_name: &str, source: &str, diags: &[Diagnostic]) -> String {
    let file = SimpleFile::new(file_name, source);
    let config = term::Config::default();
    let mut out = String::new();
    for d in diags {
        match term::emit_into_string(&config, &file, &to_codespan(d, source.len())) {
            Ok(s) => out.push_str(&s),
            // Only a span outside the file can fail, and spans are clamped; fall back to the
            // bare message rather than lose the diagnostic.
            Err(_) => out.push_str(&format!("error: {}\n", d.message)),
        }
    }
    out
}

/// Print diagnostics to stderr, in colour when stderr is a terminal and `NO_COLOR` is unset.
pub fn emit_stderr(file_name: &str, source: &str, diags: &[Diagnostic]) {
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if !colour {
        eprint!("{}", render_plain(file_name, source, diags));
        return;
    }
    let file = SimpleFile::new(file_name, source);
    let config = term::Config::default();
    let stream = termcolor::StandardStream::stderr(termcolor::ColorChoice::Always);
    let mut lock = stream.lock();
    for d in diags {
        if term::emit_to_write_style(&mut lock, &config, &file, &to_codespan(d, source.len())).is_err() {
            eprintln!("error: {}", d.message);
        }
    }
}
