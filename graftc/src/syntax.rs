//! The front end's syntax: tokens, the lexer, the AST and the parser.
//!
//! Both the lexer and the parser recover from errors: the lexer skips a bad character, the
//! parser skips to the end of the statement or item and goes on, so one run reports every
//! independent syntax error. Nesting depth is capped so that no input can exhaust the stack
//! of the parser or of the passes that walk the tree after it.

use crate::diag::{Diagnostic, Diagnostics, Span};

/// Deepest nesting of expressions and blocks accepted (keeps every recursive pass bounded).
pub const MAX_NESTING: usize = 256;

// ---------------------------------------------------------------------------------------------
// Tokens and lexer

/// A token kind.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Tok {
    /// An identifier or keyword.
    Ident(String),
    /// An integer literal: value, whether written in hex or binary, optional type suffix.
    Int(u64, bool, Option<String>),
    /// Punctuation or operator.
    Punct(&'static str),
    /// End of input.
    Eof,
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Int(v, _, _) => write!(f, "integer `{v}`"),
            Tok::Punct(p) => write!(f, "`{p}`"),
            Tok::Eof => f.write_str("end of file"),
        }
    }
}

/// A token and where it is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Where.
    pub span: Span,
}

// Longest first, so that `<<=` wins over `<<` and `<`.
const PUNCTS: &[&str] = &[
    "<<=", ">>=", "..", "->", "==", "!=", "<=", ">=", "&&", "||", "<<", ">>", "+=", "-=", "*=",
    "/=", "%=", "&=", "|=", "^=", "(", ")", "{", "}", "[", "]", ",", ";", ":", ".", "=", "+",
    "-", "*", "/", "%", "&", "|", "^", "!", "<", ">",
];

const INT_SUFFIXES: &[&str] = &["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"];

/// Split `src` into tokens (the last is `Eof`), reporting bad characters and literals.
pub fn lex(src: &str, diags: &mut Diagnostics) -> Vec<Token> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    'outer: while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if src[i..].starts_with("//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if src[i..].starts_with("/*") {
            let start = i;
            match src[i + 2..].find("*/") {
                Some(k) => i += k + 4,
                None => {
                    diags.push(
                        Diagnostic::error(Span::new(start, start + 2), "unterminated block comment")
                            .label("this comment is never closed")
                            .hint("close it with `*/`"),
                    );
                    i = bytes.len();
                }
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Token { tok: Tok::Ident(src[start..i].to_string()), span: Span::new(start, i) });
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let span = Span::new(start, i);
            let text: String = src[start..i].chars().filter(|&c| c != '_').collect();
            let (digits, radix, prefixed) = if let Some(h) = text.strip_prefix("0x") {
                (h.to_string(), 16, true)
            } else if let Some(b) = text.strip_prefix("0b") {
                (b.to_string(), 2, true)
            } else {
                (text.clone(), 10, false)
            };
            // A type suffix (`7u64`); in hex, `…i8` could be digits, so only `i`/`u` start one.
            let mut suffix = None;
            let mut body = digits.as_str();
            for s in INT_SUFFIXES {
                if let Some(b) = digits.strip_suffix(s)
                    && !b.is_empty() {
                        suffix = Some(s.to_string());
                        body = b;
                        break;
                    }
            }
            match u64::from_str_radix(body, radix) {
                Ok(v) => out.push(Token { tok: Tok::Int(v, prefixed, suffix), span }),
                Err(e) => {
                    let why = match e.kind() {
                        std::num::IntErrorKind::PosOverflow => "integer literal is too large for 64 bits",
                        _ => "malformed integer literal",
                    };
                    diags.push(
                        Diagnostic::error(span, why)
                            .label("here")
                            .hint("write decimal digits, `0x` hex or `0b` binary, optionally with a type suffix such as `u32`"),
                    );
                    out.push(Token { tok: Tok::Int(0, false, None), span });
                }
            }
            continue;
        }
        for p in PUNCTS {
            if src[i..].starts_with(p) {
                out.push(Token { tok: Tok::Punct(p), span: Span::new(i, i + p.len()) });
                i += p.len();
                continue 'outer;
            }
        }
        // Not a token: skip the whole (possibly multi-byte) character.
        let ch = src[i..].chars().next().unwrap_or('?');
        let len = ch.len_utf8();
        diags.push(Diagnostic::error(Span::new(i, i + len), format!("unexpected character `{}`", ch.escape_debug())).label("not part of the graft language"));
        i += len;
    }
    out.push(Token { tok: Tok::Eof, span: Span::new(src.len(), src.len()) });
    out
}

// ---------------------------------------------------------------------------------------------
// AST

/// A name and where it is written.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where.
    pub span: Span,
}

/// A type as written.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TypeExpr {
    /// `i32`, `bool`, `file`, `buffer`, ...
    Named(Ident),
    /// `[T; N]`
    Array(Box<TypeExpr>, u64, Span),
}

impl TypeExpr {
    /// Where it is written.
    pub fn span(&self) -> Span {
        match self {
            TypeExpr::Named(i) => i.span,
            TypeExpr::Array(_, _, s) => *s,
        }
    }
}

/// A parameter `name: type`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Param {
    /// Its name.
    pub name: Ident,
    /// Its type.
    pub ty: TypeExpr,
}

/// A function or the graft itself.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FnDecl {
    /// The function's name; for the graft, the graft point's dotted name.
    pub name: Ident,
    /// Parameters.
    pub params: Vec<Param>,
    /// Return type, if any.
    pub ret: Option<TypeExpr>,
    /// The body.
    pub body: Block,
}

/// A top-level item.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Item {
    /// `graft point.name(params) -> i32 { ... }`
    Graft(FnDecl),
    /// `fn name(params) -> T { ... }`
    Fn(FnDecl),
    /// `global name: T = init;` (lives in the data region)
    Global {
        /// Its name.
        name: Ident,
        /// Its type.
        ty: TypeExpr,
        /// Initial value; zero if absent.
        init: Option<Expr>,
    },
    /// `const NAME: T = expr;`
    Const {
        /// Its name.
        name: Ident,
        /// Its type.
        ty: TypeExpr,
        /// A constant expression.
        value: Expr,
    },
    /// `fuel N;`
    Fuel(Expr),
    /// `data_size N;`
    DataSize(Expr),
}

/// `{ stmts }`
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Block {
    /// The statements.
    pub stmts: Vec<Stmt>,
    /// From `{` to `}`.
    pub span: Span,
}

/// A statement.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Stmt {
    /// What it is.
    pub kind: StmtKind,
    /// Where.
    pub span: Span,
}

/// The statement kinds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StmtKind {
    /// `let [mut] x[: T] = e;`
    Let {
        /// The variable.
        name: Ident,
        /// Whether it may be assigned.
        mutable: bool,
        /// Declared type.
        ty: Option<TypeExpr>,
        /// Initial value.
        init: Expr,
    },
    /// `place = e;` or `place op= e;`
    Assign {
        /// The place.
        target: Expr,
        /// The operator of a compound assignment.
        op: Option<BinOp>,
        /// The value.
        value: Expr,
    },
    /// `if c { } [else ...]`
    If {
        /// Condition.
        cond: Expr,
        /// Then branch.
        then: Block,
        /// Else branch (an `else if` is a block holding one `if`).
        els: Option<Block>,
    },
    /// `while c { }`
    While {
        /// Condition.
        cond: Expr,
        /// Body.
        body: Block,
    },
    /// `for i in a..b { }`
    For {
        /// The counter.
        var: Ident,
        /// Start (inclusive).
        start: Expr,
        /// End (exclusive).
        end: Expr,
        /// Body.
        body: Block,
    },
    /// `break;`
    Break,
    /// `continue;`
    Continue,
    /// `return [e];`
    Return(Option<Expr>),
    /// `abort(code);`
    Abort(Expr),
    /// `e;`
    Expr(Expr),
    /// `{ ... }`
    Block(Block),
    /// A statement that failed to parse (already reported).
    Error,
}

/// Binary operators.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `&`
    And,
    /// `|`
    Or,
    /// `^`
    Xor,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `&&`
    LogicAnd,
    /// `||`
    LogicOr,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::And => "&",
            BinOp::Or => "|",
            BinOp::Xor => "^",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::LogicAnd => "&&",
            BinOp::LogicOr => "||",
        }
    }

    /// Whether the result is a `bool` comparison of two operands.
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }

    fn binding(tok: &str) -> Option<(BinOp, u8)> {
        Some(match tok {
            "||" => (BinOp::LogicOr, 1),
            "&&" => (BinOp::LogicAnd, 2),
            "==" => (BinOp::Eq, 3),
            "!=" => (BinOp::Ne, 3),
            "<" => (BinOp::Lt, 3),
            "<=" => (BinOp::Le, 3),
            ">" => (BinOp::Gt, 3),
            ">=" => (BinOp::Ge, 3),
            "|" => (BinOp::Or, 4),
            "^" => (BinOp::Xor, 5),
            "&" => (BinOp::And, 6),
            "<<" => (BinOp::Shl, 7),
            ">>" => (BinOp::Shr, 7),
            "+" => (BinOp::Add, 8),
            "-" => (BinOp::Sub, 8),
            "*" => (BinOp::Mul, 9),
            "/" => (BinOp::Div, 9),
            "%" => (BinOp::Rem, 9),
            _ => return None,
        })
    }

    fn compound(tok: &str) -> Option<BinOp> {
        Some(match tok {
            "+=" => BinOp::Add,
            "-=" => BinOp::Sub,
            "*=" => BinOp::Mul,
            "/=" => BinOp::Div,
            "%=" => BinOp::Rem,
            "&=" => BinOp::And,
            "|=" => BinOp::Or,
            "^=" => BinOp::Xor,
            "<<=" => BinOp::Shl,
            ">>=" => BinOp::Shr,
            _ => return None,
        })
    }
}

/// Unary operators.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnOp {
    /// `-e`
    Neg,
    /// `!e`: logical not on `bool`, bitwise not on integers.
    Not,
}

/// An expression.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where.
    pub span: Span,
}

/// The expression kinds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ExprKind {
    /// An integer literal: value, written in hex/binary, suffix.
    Int(u64, bool, Option<String>),
    /// `true` / `false`
    Bool(bool),
    /// A variable, constant, global or buffer.
    Name(Ident),
    /// `a op b`
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `op e`
    Unary(UnOp, Box<Expr>),
    /// `e as T`
    Cast(Box<Expr>, TypeExpr),
    /// `f(args)` or `ns.callable(args)`: the path's parts.
    Call(Vec<Ident>, Vec<Expr>),
    /// `base[index]`, optionally viewed as `.T` (buffers only).
    Index(Box<Expr>, Box<Expr>, Option<Ident>),
    /// `[a, b, c]` (global initialisers only)
    ArrayLit(Vec<Expr>),
    /// `[e; n]` (global initialisers only)
    ArrayRepeat(Box<Expr>, Box<Expr>),
    /// Stands in for an expression that failed to parse (already reported).
    Error,
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    diags: &'a mut Diagnostics,
    /// Where the lexer reported bad characters: the parser stays quiet about the gap they
    /// leave, which would otherwise be reported twice.
    lex_errors: Vec<usize>,
    /// Whether the end of file has been reported inside a block already (every enclosing
    /// block would report it again).
    eof_reported: bool,
}

/// A parse error already reported; the caller recovers.
struct Reported;

type PResult<T> = Result<T, Reported>;

const KEYWORDS: &[&str] = &[
    "graft", "fn", "global", "const", "fuel", "data_size", "let", "mut", "if", "else", "while",
    "for", "in", "break", "continue", "return", "abort", "true", "false", "as",
];

/// Parse a whole file. Items that fail to parse are reported and skipped.
pub fn parse(src: &str, diags: &mut Diagnostics) -> Vec<Item> {
    let before = diags.list.len();
    let toks = lex(src, diags);
    let lex_errors = diags.list[before..].iter().map(|d| d.primary.0.start).collect();
    let mut p = Parser { src, toks, pos: 0, depth: 0, diags, lex_errors, eof_reported: false };
    let mut items = Vec::new();
    while !p.at_eof() {
        p.depth = 0;
        match p.item() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => {}
            Err(Reported) => p.sync_item(),
        }
    }
    items
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn peek_at(&self, n: usize) -> &Tok {
        self.toks.get(self.pos + n).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn span(&self) -> Span {
        self.toks.get(self.pos).or(self.toks.last()).map_or(Span::default(), |t| t.span)
    }

    fn prev_span(&self) -> Span {
        self.pos.checked_sub(1).and_then(|i| self.toks.get(i)).map_or(Span::default(), |t| t.span)
    }

    fn at_eof(&self) -> bool {
        matches!(self.peek(), Tok::Eof)
    }

    fn bump(&mut self) -> Token {
        let t = self.toks.get(self.pos).cloned().unwrap_or(Token { tok: Tok::Eof, span: self.span() });
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn is_kw(&self, k: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == k)
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if self.is_punct(p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_kw(&mut self, k: &str) -> bool {
        if self.is_kw(k) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn error_here(&mut self, expected: &str) -> Reported {
        let found = self.peek().clone();
        let (gap_start, gap_end) = (self.prev_span().end, self.span().start);
        if self.lex_errors.iter().any(|&p| p >= gap_start && p < gap_end) {
            return Reported;
        }
        let mut span = self.span();
        let mut d;
        if matches!(found, Tok::Eof) || (expected == "`;`" && self.pos > 0) {
            // A missing `;` (or anything at the end) is best shown right after what precedes it.
            let prev = self.prev_span();
            span = Span::new(prev.end, prev.end);
            d = Diagnostic::error(span, format!("expected {expected}, found {found}")).label(format!("expected {expected} here"));
            if expected == "`;`" {
                d = d.hint("every statement ends with `;` (blocks `{ ... }` excepted)");
            }
        } else {
            d = Diagnostic::error(span, format!("expected {expected}, found {found}")).label(format!("expected {expected}"));
        }
        self.diags.push(d);
        Reported
    }

    fn expect_punct(&mut self, p: &'static str) -> PResult<Span> {
        if self.is_punct(p) {
            return Ok(self.bump().span);
        }
        let r = self.error_here(&format!("`{p}`"));
        // A `;` missing at the end of a line: report it, then go on as if it were there, so
        // that the statement still counts (its variable stays declared) and the next line is
        // parsed normally.
        if p == ";" && self.newline_before() {
            return Ok(Span::new(self.prev_span().end, self.prev_span().end));
        }
        Err(r)
    }

    fn newline_before(&self) -> bool {
        let (a, b) = (self.prev_span().end, self.span().start);
        self.src.get(a..b).is_some_and(|gap| gap.contains('\n'))
    }

    fn ident(&mut self, what: &str) -> PResult<Ident> {
        match self.peek().clone() {
            Tok::Ident(name) if !KEYWORDS.contains(&name.as_str()) => {
                let span = self.bump().span;
                Ok(Ident { name, span })
            }
            Tok::Ident(name) => {
                let span = self.span();
                self.diags.push(
                    Diagnostic::error(span, format!("expected {what}, found keyword `{name}`"))
                        .label("a keyword cannot be used as a name"),
                );
                Err(Reported)
            }
            _ => Err(self.error_here(what)),
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            let span = self.span();
            self.diags.push(
                Diagnostic::error(span, format!("nesting deeper than {MAX_NESTING} levels"))
                    .label("too deep")
                    .hint("split the expression or move code into a function"),
            );
            return Err(Reported);
        }
        Ok(())
    }

    /// Skip to the start of the next item.
    fn sync_item(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::Punct("{") => depth += 1,
                Tok::Punct("}") => {
                    if depth <= 1 {
                        self.pos += 1;
                        if depth == 1 {
                            return;
                        }
                        continue;
                    }
                    depth -= 1;
                }
                Tok::Punct(";") if depth == 0 => {
                    self.pos += 1;
                    return;
                }
                Tok::Ident(k) if depth == 0 && ["graft", "fn", "global", "const", "fuel", "data_size"].contains(&k.as_str()) && self.pos > 0 => {
                    return;
                }
                _ => {}
            }
            self.pos += 1;
        }
    }

    /// Skip to the end of the current statement: past a `;` or up to (not past) a `}` at
    /// this level.
    fn sync_stmt(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::Punct("{") => depth += 1,
                Tok::Punct("}") => {
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                    if depth == 0 {
                        self.pos += 1;
                        return;
                    }
                }
                Tok::Punct(";") if depth == 0 => {
                    self.pos += 1;
                    return;
                }
                _ => {}
            }
            self.pos += 1;
        }
    }

    fn item(&mut self) -> PResult<Option<Item>> {
        let start = self.pos;
        if self.eat_kw("graft") {
            let mut parts = vec![self.ident("a graft point name")?];
            while self.eat_punct(".") {
                parts.push(self.ident("a graft point name")?);
            }
            let span = parts[0].span.to(parts[parts.len() - 1].span);
            let name = Ident { name: parts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join("."), span };
            return Ok(Some(Item::Graft(self.fn_rest(name)?)));
        }
        if self.eat_kw("fn") {
            let name = self.ident("a function name")?;
            return Ok(Some(Item::Fn(self.fn_rest(name)?)));
        }
        if self.eat_kw("global") {
            let name = self.ident("a global name")?;
            self.expect_punct(":")?;
            let ty = self.ty()?;
            let init = if self.eat_punct("=") { Some(self.expr()?) } else { None };
            self.expect_punct(";")?;
            return Ok(Some(Item::Global { name, ty, init }));
        }
        if self.eat_kw("const") {
            let name = self.ident("a constant name")?;
            self.expect_punct(":")?;
            let ty = self.ty()?;
            self.expect_punct("=")?;
            let value = self.expr()?;
            self.expect_punct(";")?;
            return Ok(Some(Item::Const { name, ty, value }));
        }
        if self.eat_kw("fuel") {
            let e = self.expr()?;
            self.expect_punct(";")?;
            return Ok(Some(Item::Fuel(e)));
        }
        if self.eat_kw("data_size") {
            let e = self.expr()?;
            self.expect_punct(";")?;
            return Ok(Some(Item::DataSize(e)));
        }
        let span = self.span();
        let found = self.peek().clone();
        self.diags.push(
            Diagnostic::error(span, format!("expected an item, found {found}"))
                .label("not allowed at the top level")
                .hint("a file holds `graft`, `fn`, `global`, `const`, `fuel` and `data_size` items; statements go inside a function"),
        );
        // Make progress even when the bad token is an item keyword lookalike.
        if self.pos == start {
            self.pos += 1;
        }
        Err(Reported)
    }

    fn fn_rest(&mut self, name: Ident) -> PResult<FnDecl> {
        self.expect_punct("(")?;
        let mut params = Vec::new();
        while !self.is_punct(")") {
            let pname = self.ident("a parameter name")?;
            self.expect_punct(":")?;
            let ty = self.ty()?;
            params.push(Param { name: pname, ty });
            if !self.eat_punct(",") {
                break;
            }
        }
        self.expect_punct(")")?;
        let ret = if self.eat_punct("->") { Some(self.ty()?) } else { None };
        let body = self.block()?;
        Ok(FnDecl { name, params, ret, body })
    }

    fn ty(&mut self) -> PResult<TypeExpr> {
        if self.is_punct("[") {
            let start = self.bump().span;
            self.enter()?;
            let elem = self.ty();
            self.depth -= 1;
            let elem = elem?;
            self.expect_punct(";")?;
            let n = match self.peek().clone() {
                Tok::Int(v, _, None) => {
                    self.bump();
                    v
                }
                _ => return Err(self.error_here("an array length (an integer literal)")),
            };
            let end = self.expect_punct("]")?;
            return Ok(TypeExpr::Array(Box::new(elem), n, start.to(end)));
        }
        match self.peek().clone() {
            Tok::Ident(name) if !KEYWORDS.contains(&name.as_str()) => {
                let span = self.bump().span;
                Ok(TypeExpr::Named(Ident { name, span }))
            }
            _ => Err(self.error_here("a type")),
        }
    }

    fn block(&mut self) -> PResult<Block> {
        let open = self.expect_punct("{")?;
        self.enter()?;
        let mut stmts = Vec::new();
        loop {
            if self.is_punct("}") {
                break;
            }
            if self.at_eof() {
                if !self.eof_reported {
                    self.eof_reported = true;
                    self.diags.push(
                        Diagnostic::error(self.span(), "expected `}`, found end of file")
                            .label("the file ends here")
                            .also(open, "this block is never closed"),
                    );
                }
                self.depth -= 1;
                return Err(Reported);
            }
            let start = self.span();
            // Error paths may leave the depth raised; every statement starts from here.
            let depth = self.depth;
            let parsed = self.stmt();
            self.depth = depth;
            match parsed {
                Ok(s) => stmts.push(s),
                Err(Reported) => {
                    self.sync_stmt();
                    stmts.push(Stmt { kind: StmtKind::Error, span: start.to(self.prev_span()) });
                }
            }
        }
        self.depth -= 1;
        let close = self.bump().span;
        Ok(Block { stmts, span: open.to(close) })
    }

    fn stmt(&mut self) -> PResult<Stmt> {
        let start = self.span();
        let kind = self.stmt_kind()?;
        Ok(Stmt { kind, span: start.to(self.prev_span()) })
    }

    fn stmt_kind(&mut self) -> PResult<StmtKind> {
        if self.eat_kw("let") {
            let mutable = self.eat_kw("mut");
            let name = self.ident("a variable name")?;
            let ty = if self.eat_punct(":") { Some(self.ty()?) } else { None };
            self.expect_punct("=")?;
            let init = self.expr()?;
            self.expect_punct(";")?;
            return Ok(StmtKind::Let { name, mutable, ty, init });
        }
        if self.is_kw("if") {
            return self.if_stmt();
        }
        if self.eat_kw("while") {
            let cond = self.expr()?;
            let body = self.block()?;
            return Ok(StmtKind::While { cond, body });
        }
        if self.eat_kw("for") {
            let var = self.ident("a loop variable")?;
            if !self.eat_kw("in") {
                return Err(self.error_here("`in`"));
            }
            let start = self.expr()?;
            self.expect_punct("..")?;
            let end = self.expr()?;
            let body = self.block()?;
            return Ok(StmtKind::For { var, start, end, body });
        }
        if self.eat_kw("break") {
            self.expect_punct(";")?;
            return Ok(StmtKind::Break);
        }
        if self.eat_kw("continue") {
            self.expect_punct(";")?;
            return Ok(StmtKind::Continue);
        }
        if self.eat_kw("return") {
            let value = if self.is_punct(";") { None } else { Some(self.expr()?) };
            self.expect_punct(";")?;
            return Ok(StmtKind::Return(value));
        }
        if self.eat_kw("abort") {
            self.expect_punct("(")?;
            let code = self.expr()?;
            self.expect_punct(")")?;
            self.expect_punct(";")?;
            return Ok(StmtKind::Abort(code));
        }
        if self.is_punct("{") {
            return Ok(StmtKind::Block(self.block()?));
        }
        let e = self.expr()?;
        if self.eat_punct("=") {
            let value = self.expr()?;
            self.expect_punct(";")?;
            return Ok(StmtKind::Assign { target: e, op: None, value });
        }
        if let Tok::Punct(p) = self.peek()
            && let Some(op) = BinOp::compound(p) {
                self.pos += 1;
                let value = self.expr()?;
                self.expect_punct(";")?;
                return Ok(StmtKind::Assign { target: e, op: Some(op), value });
            }
        self.expect_punct(";")?;
        Ok(StmtKind::Expr(e))
    }

    fn if_stmt(&mut self) -> PResult<StmtKind> {
        let if_span = self.bump().span;
        let cond = self.expr()?;
        let then = self.block()?;
        let els = if self.eat_kw("else") {
            if self.is_kw("if") {
                let start = self.span();
                self.enter()?;
                let inner = self.if_stmt();
                self.depth -= 1;
                let inner = inner?;
                let span = start.to(self.prev_span());
                Some(Block { stmts: vec![Stmt { kind: inner, span }], span })
            } else {
                Some(self.block()?)
            }
        } else {
            None
        };
        let _ = if_span;
        Ok(StmtKind::If { cond, then, els })
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.binary(0);
        self.depth -= 1;
        r
    }

    fn binary(&mut self, min: u8) -> PResult<Expr> {
        let base = self.depth;
        let r = self.binary_chain(min);
        self.depth = base;
        r
    }

    // Each operator of a chain nests the tree one level deeper (`a + b + c` is `(a + b) + c`),
    // so each counts toward the nesting limit, like a parenthesis.
    fn binary_chain(&mut self, min: u8) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        loop {
            let Tok::Punct(p) = self.peek() else { break };
            let Some((op, prec)) = BinOp::binding(p) else { break };
            if prec <= min {
                break;
            }
            self.pos += 1;
            self.enter()?;
            self.enter()?;
            let rhs = self.binary(prec);
            self.depth -= 1;
            let rhs = rhs?;
            // Comparisons do not chain: `a < b < c` is a type error in disguise.
            if op.is_comparison()
                && let Tok::Punct(q) = self.peek()
                    && BinOp::binding(q).is_some_and(|(o, _)| o.is_comparison()) {
                        let span = self.span();
                        self.diags.push(
                            Diagnostic::error(span, "comparison operators cannot be chained")
                                .label("second comparison")
                                .hint("use `&&`: `a < b && b < c`"),
                        );
                        return Err(Reported);
                    }
            let span = lhs.span.to(rhs.span);
            lhs = Expr { kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Expr> {
        let start = self.span();
        let op = if self.eat_punct("-") {
            Some(UnOp::Neg)
        } else if self.eat_punct("!") {
            Some(UnOp::Not)
        } else {
            None
        };
        if let Some(op) = op {
            self.enter()?;
            let e = self.unary();
            self.depth -= 1;
            let e = e?;
            let span = start.to(e.span);
            return Ok(Expr { kind: ExprKind::Unary(op, Box::new(e)), span });
        }
        let base = self.depth;
        let mut e = self.postfix()?;
        while self.eat_kw("as") {
            self.enter()?;
            let ty = self.ty()?;
            let span = e.span.to(ty.span());
            e = Expr { kind: ExprKind::Cast(Box::new(e), ty), span };
        }
        self.depth = base;
        Ok(e)
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let base = self.depth;
        let mut e = self.primary()?;
        while self.is_punct("[") {
            self.pos += 1;
            self.enter()?;
            let index = self.expr()?;
            let close = self.expect_punct("]")?;
            let mut span = e.span.to(close);
            let view = if self.is_punct(".") && matches!(self.peek_at(1), Tok::Ident(_)) {
                self.pos += 1;
                let v = self.ident("a type")?;
                span = span.to(v.span);
                Some(v)
            } else {
                None
            };
            e = Expr { kind: ExprKind::Index(Box::new(e), Box::new(index), view), span };
        }
        self.depth = base;
        Ok(e)
    }

    fn args(&mut self) -> PResult<(Vec<Expr>, Span)> {
        self.expect_punct("(")?;
        let mut args = Vec::new();
        while !self.is_punct(")") {
            args.push(self.expr()?);
            if !self.eat_punct(",") {
                break;
            }
        }
        let close = self.expect_punct(")")?;
        Ok((args, close))
    }

    fn primary(&mut self) -> PResult<Expr> {
        let start = self.span();
        match self.peek().clone() {
            Tok::Int(v, hex, suffix) => {
                self.bump();
                Ok(Expr { kind: ExprKind::Int(v, hex, suffix), span: start })
            }
            Tok::Ident(k) if k == "true" || k == "false" => {
                self.bump();
                Ok(Expr { kind: ExprKind::Bool(k == "true"), span: start })
            }
            Tok::Ident(_) => {
                let first = self.ident("an expression")?;
                if self.is_punct(".") && matches!(self.peek_at(1), Tok::Ident(_)) {
                    let mut path = vec![first];
                    while self.eat_punct(".") {
                        path.push(self.ident("a callable name")?);
                    }
                    if !self.is_punct("(") {
                        return Err(self.error_here("`(` (a dotted name is a kernel callable, and must be called)"));
                    }
                    let (args, close) = self.args()?;
                    return Ok(Expr { kind: ExprKind::Call(path, args), span: start.to(close) });
                }
                if self.is_punct("(") {
                    let (args, close) = self.args()?;
                    return Ok(Expr { kind: ExprKind::Call(vec![first], args), span: start.to(close) });
                }
                let span = first.span;
                Ok(Expr { kind: ExprKind::Name(first), span })
            }
            Tok::Punct("(") => {
                self.bump();
                let e = self.expr()?;
                let close = self.expect_punct(")")?;
                Ok(Expr { kind: e.kind, span: start.to(close) })
            }
            Tok::Punct("[") => {
                self.bump();
                if self.is_punct("]") {
                    let close = self.bump().span;
                    return Ok(Expr { kind: ExprKind::ArrayLit(Vec::new()), span: start.to(close) });
                }
                let first = self.expr()?;
                if self.eat_punct(";") {
                    let n = self.expr()?;
                    let close = self.expect_punct("]")?;
                    return Ok(Expr { kind: ExprKind::ArrayRepeat(Box::new(first), Box::new(n)), span: start.to(close) });
                }
                let mut elems = vec![first];
                while self.eat_punct(",") {
                    if self.is_punct("]") {
                        break;
                    }
                    elems.push(self.expr()?);
                }
                let close = self.expect_punct("]")?;
                Ok(Expr { kind: ExprKind::ArrayLit(elems), span: start.to(close) })
            }
            _ => Err(self.error_here("an expression")),
        }
    }
}
