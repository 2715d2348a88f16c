//! The parser: text format to [`Module`].
//!
//! A hand-written lexer and recursive-descent parser; every error carries the line and column
//! (1-based) where it was found. The parser checks syntax and the numbering of imports,
//! functions and blocks (they must appear in order, `imp0, imp1, ...`), nothing the verifier
//! checks.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::entity::{Block, FuncRef, ImportRef, Region, Value};
use crate::ir::{BlockCall, BlockData, BlockParam, Function, Import, Inst, InstData, Module};
use crate::opcode::{Format, IntCC, Opcode};
use crate::types::{HandleKind, Signature, Type};

/// A parse error and where it happened.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ParseError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub col: u32,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// What is wrong at a [`ParseError`]'s position.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ParseErrorKind {
    /// A character that starts no token.
    UnexpectedChar(char),
    /// A string literal without its closing quote.
    UnterminatedString,
    /// A number that does not fit where it is used.
    NumberOutOfRange(String),
    /// A token other than the one the grammar needs here.
    Expected {
        /// What was expected.
        expected: &'static str,
        /// What was found, in text.
        found: String,
    },
    /// An unknown instruction mnemonic.
    UnknownOpcode(String),
    /// An unknown type name.
    UnknownType(String),
    /// An unknown `icmp` condition.
    UnknownCondition(String),
    /// An opcode written with or without a `.type` suffix against its syntax.
    TypeSuffix {
        /// The opcode.
        opcode: &'static str,
        /// Whether the syntax requires a suffix.
        required: bool,
    },
    /// An entity defined out of order (`imp0, imp1, ...`; `fn0, fn1, ...`; `b0, b1, ...`).
    OutOfOrder {
        /// The entity expected next.
        expected: String,
        /// The entity found.
        found: String,
    },
    /// The `data` string is not an even number of hex digits.
    BadHex,
    /// A header line (`graft`, `resources`) given twice.
    DuplicateHeader(&'static str),
    /// A required header line (`graft POINT`) missing: every printed module has it.
    MissingHeader(&'static str),
    /// An instruction with a result that produces none, or the reverse.
    ResultMismatch {
        /// The opcode.
        opcode: &'static str,
        /// Whether the syntax requires a result.
        required: bool,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.col)?;
        match &self.kind {
            ParseErrorKind::UnexpectedChar(c) => write!(f, "unexpected character {c:?}"),
            ParseErrorKind::UnterminatedString => f.write_str("unterminated string"),
            ParseErrorKind::NumberOutOfRange(s) => write!(f, "number {s} is out of range here"),
            ParseErrorKind::Expected { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            ParseErrorKind::UnknownOpcode(s) => write!(f, "unknown opcode `{s}`"),
            ParseErrorKind::UnknownType(s) => write!(f, "unknown type `{s}`"),
            ParseErrorKind::UnknownCondition(s) => write!(f, "unknown condition `{s}`"),
            ParseErrorKind::TypeSuffix { opcode, required: true } => {
                write!(f, "`{opcode}` needs a type suffix, as in `{opcode}.i32`")
            }
            ParseErrorKind::TypeSuffix { opcode, required: false } => {
                write!(f, "`{opcode}` takes no type suffix")
            }
            ParseErrorKind::OutOfOrder { expected, found } => {
                write!(f, "expected {expected} next, found {found} (entities are numbered in order)")
            }
            ParseErrorKind::BadHex => f.write_str("data must be an even number of hex digits"),
            ParseErrorKind::DuplicateHeader(h) => write!(f, "`{h}` given twice"),
            ParseErrorKind::MissingHeader(h) => write!(f, "the module has no `{h}` line (as in `graft vm.pick_victim`)"),
            ParseErrorKind::ResultMismatch { opcode, required: true } => {
                write!(f, "`{opcode}` produces a value: write `vN = {opcode} ...`")
            }
            ParseErrorKind::ResultMismatch { opcode, required: false } => {
                write!(f, "`{opcode}` produces no value")
            }
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum Tok {
    Ident(String),
    /// A number with its sign; wide enough for u64 and i64.
    Int(i128),
    Str(String),
    Punct(char),
    Arrow,
    Newline,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Int(n) => write!(f, "`{n}`"),
            Tok::Str(s) => write!(f, "\"{s}\""),
            Tok::Punct(c) => write!(f, "`{c}`"),
            Tok::Arrow => f.write_str("`->`"),
            Tok::Newline => f.write_str("end of line"),
            Tok::Eof => f.write_str("end of input"),
        }
    }
}

struct Token {
    tok: Tok,
    line: u32,
    col: u32,
}

fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    let err = |line, col, kind| ParseError { line, col, kind };
    while let Some(&c) = chars.get(i) {
        let (tl, tc) = (line, col);
        let start = i;
        let tok = match c {
            '\n' => {
                i += 1;
                line += 1;
                col = 1;
                out.push(Token { tok: Tok::Newline, line: tl, col: tc });
                continue;
            }
            c if c.is_whitespace() => {
                i += 1;
                col += 1;
                continue;
            }
            ';' => {
                while chars.get(i).is_some_and(|&c| c != '\n') {
                    i += 1;
                }
                continue;
            }
            '-' if chars.get(i + 1) == Some(&'>') => {
                i += 2;
                Tok::Arrow
            }
            '-' | '0'..='9' => {
                let neg = c == '-';
                if neg {
                    i += 1;
                }
                let digits_start = i;
                let hex = chars.get(i) == Some(&'0') && matches!(chars.get(i + 1), Some('x' | 'X'));
                if hex {
                    i += 2;
                }
                while chars.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let body: String =
                    chars[digits_start + if hex { 2 } else { 0 }..i].iter().filter(|c| **c != '_').collect();
                let magnitude = if body.is_empty() {
                    None
                } else {
                    u128::from_str_radix(&body, if hex { 16 } else { 10 }).ok()
                };
                let value = magnitude
                    .filter(|m| *m <= u64::MAX as u128 + 1)
                    .map(|m| if neg { -(m as i128) } else { m as i128 });
                match value {
                    Some(v) => Tok::Int(v),
                    None => return Err(err(tl, tc, ParseErrorKind::NumberOutOfRange(text))),
                }
            }
            '"' => {
                i += 1;
                let s_start = i;
                while chars.get(i).is_some_and(|&c| c != '"' && c != '\n') {
                    i += 1;
                }
                if chars.get(i) != Some(&'"') {
                    return Err(err(tl, tc, ParseErrorKind::UnterminatedString));
                }
                let s: String = chars[s_start..i].iter().collect();
                i += 1;
                Tok::Str(s)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                {
                    i += 1;
                }
                Tok::Ident(chars[start..i].iter().collect())
            }
            '(' | ')' | '{' | '}' | '[' | ']' | ',' | ':' | '=' | '+' | '<' | '>' => {
                i += 1;
                Tok::Punct(c)
            }
            other => return Err(err(tl, tc, ParseErrorKind::UnexpectedChar(other))),
        };
        col += (i - start) as u32;
        out.push(Token { tok, line: tl, col: tc });
    }
    out.push(Token { tok: Tok::Eof, line, col });
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

/// Parse a module from its text format.
pub fn parse(src: &str) -> Result<Module, ParseError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0 };
    p.module()
}

impl Parser {
    fn peek(&self) -> &Tok {
        // The token list always ends with Eof and `bump` never moves past it.
        self.toks.get(self.pos).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn peek_at(&self, k: usize) -> &Tok {
        self.toks.get(self.pos + k).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn here(&self) -> (u32, u32) {
        self.toks
            .get(self.pos)
            .or_else(|| self.toks.last())
            .map_or((1, 1), |t| (t.line, t.col))
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn error<T>(&self, kind: ParseErrorKind) -> Result<T, ParseError> {
        let (line, col) = self.here();
        Err(ParseError { line, col, kind })
    }

    fn expected<T>(&self, expected: &'static str) -> Result<T, ParseError> {
        self.error(ParseErrorKind::Expected { expected, found: self.peek().to_string() })
    }

    fn skip_newlines(&mut self) {
        while *self.peek() == Tok::Newline {
            self.bump();
        }
    }

    fn punct(&mut self, c: char, what: &'static str) -> Result<(), ParseError> {
        if *self.peek() == Tok::Punct(c) {
            self.bump();
            Ok(())
        } else {
            self.expected(what)
        }
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if *self.peek() == Tok::Punct(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn end_of_line(&mut self) -> Result<(), ParseError> {
        match self.peek() {
            Tok::Newline => {
                self.bump();
                Ok(())
            }
            Tok::Eof => Ok(()),
            _ => self.expected("end of line"),
        }
    }

    fn ident(&mut self, what: &'static str) -> Result<String, ParseError> {
        match self.peek() {
            Tok::Ident(s) => {
                let s = s.clone();
                self.bump();
                Ok(s)
            }
            _ => self.expected(what),
        }
    }

    fn int(&mut self, what: &'static str) -> Result<i128, ParseError> {
        match *self.peek() {
            Tok::Int(n) => {
                self.bump();
                Ok(n)
            }
            _ => self.expected(what),
        }
    }

    fn int_in<T: TryFrom<i128>>(&mut self, what: &'static str) -> Result<T, ParseError> {
        let at = self.pos;
        let n = self.int(what)?;
        T::try_from(n).or_else(|_| {
            self.pos = at;
            self.error(ParseErrorKind::NumberOutOfRange(n.to_string()))
        })
    }

    /// An entity written `<prefix><u32>`.
    fn entity(&mut self, prefix: &'static str, what: &'static str) -> Result<u32, ParseError> {
        if let Tok::Ident(s) = self.peek()
            && let Some(digits) = s.strip_prefix(prefix)
                && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    if let Ok(n) = digits.parse::<u32>() {
                        self.bump();
                        return Ok(n);
                    }
                    let s = s.clone();
                    return self.error(ParseErrorKind::NumberOutOfRange(s));
                }
        self.expected(what)
    }

    fn is_entity(&self, prefix: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.strip_prefix(prefix)
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())))
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        self.entity("v", "a value (`v0`)").map(Value)
    }

    fn block_ref(&mut self) -> Result<Block, ParseError> {
        self.entity("b", "a block (`b0`)").map(Block)
    }

    fn ty(&mut self) -> Result<Type, ParseError> {
        let at = self.pos;
        let name = self.ident("a type")?;
        if name == "handle" {
            self.punct('<', "`<` after `handle`")?;
            let kind = self.ident("a handle kind (`page`, `thread`, `file`, `lock`)")?;
            self.punct('>', "`>`")?;
            return HandleKind::from_name(&kind).map(Type::Handle).ok_or_else(|| {
                self.pos = at;
                let (line, col) = self.here();
                ParseError { line, col, kind: ParseErrorKind::UnknownType(alloc::format!("handle<{kind}>")) }
            });
        }
        Type::from_text(&name).ok_or_else(|| {
            self.pos = at;
            let (line, col) = self.here();
            ParseError { line, col, kind: ParseErrorKind::UnknownType(name) }
        })
    }

    fn signature(&mut self) -> Result<Signature, ParseError> {
        self.punct('(', "`(` starting a signature")?;
        let mut params = Vec::new();
        if !self.eat_punct(')') {
            loop {
                params.push(self.ty()?);
                if self.eat_punct(')') {
                    break;
                }
                self.punct(',', "`,` or `)`")?;
            }
        }
        let ret = if *self.peek() == Tok::Arrow {
            self.bump();
            Some(self.ty()?)
        } else {
            None
        };
        Ok(Signature { params, ret })
    }

    fn value_list(&mut self) -> Result<Vec<Value>, ParseError> {
        self.punct('(', "`(`")?;
        let mut out = Vec::new();
        if self.eat_punct(')') {
            return Ok(out);
        }
        loop {
            out.push(self.value()?);
            if self.eat_punct(')') {
                return Ok(out);
            }
            self.punct(',', "`,` or `)`")?;
        }
    }

    fn block_call(&mut self) -> Result<BlockCall, ParseError> {
        let block = self.block_ref()?;
        let args = if *self.peek() == Tok::Punct('(') { self.value_list()? } else { Vec::new() };
        Ok(BlockCall { block, args })
    }

    fn module(&mut self) -> Result<Module, ParseError> {
        let mut m = Module::default();
        let (mut seen_graft, mut seen_resources) = (false, false);
        loop {
            self.skip_newlines();
            let kw = match self.peek() {
                Tok::Eof if !seen_graft => return self.error(ParseErrorKind::MissingHeader("graft")),
                Tok::Eof => return Ok(m),
                Tok::Ident(s) => s.clone(),
                _ => return self.expected("`graft`, `resources`, `data`, `import` or `function`"),
            };
            match kw.as_str() {
                "graft" => {
                    if seen_graft {
                        return self.error(ParseErrorKind::DuplicateHeader("graft"));
                    }
                    seen_graft = true;
                    self.bump();
                    m.point = self.ident("a graft point name")?;
                    self.end_of_line()?;
                }
                "resources" => {
                    if seen_resources {
                        return self.error(ParseErrorKind::DuplicateHeader("resources"));
                    }
                    seen_resources = true;
                    self.bump();
                    while let Tok::Ident(key) = self.peek().clone() {
                        self.bump();
                        self.punct('=', "`=`")?;
                        match key.as_str() {
                            "data_size" => m.resources.data_size = self.int_in("a size")?,
                            "fuel" => m.resources.fuel = self.int_in("an amount of fuel")?,
                            _ => {
                                self.pos -= 2;
                                return self.expected("`data_size` or `fuel`");
                            }
                        }
                    }
                    self.end_of_line()?;
                }
                "data" => {
                    self.bump();
                    let Tok::Str(hex) = self.peek().clone() else {
                        return self.expected("a string of hex digits");
                    };
                    m.data.extend(decode_hex(&hex).ok_or_else(|| {
                        let (line, col) = self.here();
                        ParseError { line, col, kind: ParseErrorKind::BadHex }
                    })?);
                    self.bump();
                    self.end_of_line()?;
                }
                "import" => {
                    self.bump();
                    let at = self.pos;
                    let n = self.entity("imp", "an import (`imp0`)")?;
                    if n as usize != m.imports.len() {
                        self.pos = at;
                        return self.error(ParseErrorKind::OutOfOrder {
                            expected: ImportRef(m.imports.len() as u32).to_string(),
                            found: ImportRef(n).to_string(),
                        });
                    }
                    self.punct('=', "`=`")?;
                    let name = self.ident("a callable name")?;
                    let sig = self.signature()?;
                    m.imports.push(Import { name, sig });
                    self.end_of_line()?;
                }
                "function" => {
                    self.bump();
                    let f = self.function(m.functions.len())?;
                    m.functions.push(f);
                }
                _ => return self.expected("`graft`, `resources`, `data`, `import` or `function`"),
            }
        }
    }

    fn function(&mut self, index: usize) -> Result<Function, ParseError> {
        let at = self.pos;
        let n = self.entity("fn", "a function (`fn0`)")?;
        if n as usize != index {
            self.pos = at;
            return self.error(ParseErrorKind::OutOfOrder {
                expected: FuncRef(index as u32).to_string(),
                found: FuncRef(n).to_string(),
            });
        }
        let name = if let Tok::Ident(s) = self.peek() {
            let s = s.clone();
            self.bump();
            s
        } else {
            String::new()
        };
        let sig = self.signature()?;
        self.punct('{', "`{`")?;
        self.end_of_line()?;
        let mut blocks: Vec<BlockData> = Vec::new();
        loop {
            self.skip_newlines();
            if self.eat_punct('}') {
                self.end_of_line()?;
                return Ok(Function { name, sig, blocks });
            }
            if self.is_entity("b") && matches!(self.peek_at(1), Tok::Punct('(' | ':')) {
                let at = self.pos;
                let b = self.block_ref()?;
                if b.index() != blocks.len() {
                    self.pos = at;
                    return self.error(ParseErrorKind::OutOfOrder {
                        expected: Block(blocks.len() as u32).to_string(),
                        found: b.to_string(),
                    });
                }
                let mut params = Vec::new();
                if self.eat_punct('(') && !self.eat_punct(')') {
                    loop {
                        let value = self.value()?;
                        self.punct(':', "`:`")?;
                        let ty = self.ty()?;
                        params.push(BlockParam { value, ty });
                        if self.eat_punct(')') {
                            break;
                        }
                        self.punct(',', "`,` or `)`")?;
                    }
                }
                self.punct(':', "`:` after the block header")?;
                self.end_of_line()?;
                blocks.push(BlockData { params, insts: Vec::new() });
                continue;
            }
            if blocks.is_empty() {
                return self.expected("a block header (`b0:`) before the first instruction");
            }
            let inst = self.inst()?;
            if let Some(b) = blocks.last_mut() {
                b.insts.push(inst);
            }
        }
    }

    fn inst(&mut self) -> Result<Inst, ParseError> {
        let result = if self.is_entity("v") && *self.peek_at(1) == Tok::Punct('=') {
            let v = self.value()?;
            self.bump();
            Some(v)
        } else {
            None
        };
        let at = self.pos;
        let mnemonic = self.ident("an instruction")?;
        let (name, suffix) = match mnemonic.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (mnemonic.as_str(), None),
        };
        let Some(op) = Opcode::from_name(name) else {
            self.pos = at;
            return self.error(ParseErrorKind::UnknownOpcode(mnemonic.clone()));
        };
        let format = op.format();
        let needs_suffix = matches!(format, Format::Iconst | Format::Convert | Format::Load);
        if needs_suffix != suffix.is_some() {
            self.pos = at;
            return self.error(ParseErrorKind::TypeSuffix { opcode: op.name(), required: needs_suffix });
        }
        let ty = match suffix {
            Some(s) => match Type::from_text(s) {
                Some(t) => Some(t),
                None => {
                    self.pos = at;
                    return self.error(ParseErrorKind::UnknownType(String::from(s)));
                }
            },
            None => None,
        };
        let ty = ty.unwrap_or(Type::I8);
        let data = match format {
            Format::Iconst => InstData::Iconst { ty, imm: self.int_in("an integer")? },
            Format::Binary => {
                let a = self.value()?;
                self.punct(',', "`,`")?;
                InstData::Binary { op, args: [a, self.value()?] }
            }
            Format::Unary => InstData::Unary { op, arg: self.value()? },
            Format::Icmp => {
                let at = self.pos;
                let cc = self.ident("a condition (`eq`, `slt`, ...)")?;
                let Some(cond) = IntCC::from_name(&cc) else {
                    self.pos = at;
                    return self.error(ParseErrorKind::UnknownCondition(cc));
                };
                let a = self.value()?;
                self.punct(',', "`,`")?;
                InstData::Icmp { cond, args: [a, self.value()?] }
            }
            Format::Select => {
                let c = self.value()?;
                self.punct(',', "`,`")?;
                let a = self.value()?;
                self.punct(',', "`,`")?;
                InstData::Select { args: [c, a, self.value()?] }
            }
            Format::Convert => InstData::Convert { op, ty, arg: self.value()? },
            Format::Load => {
                let (region, offset, imm) = self.address()?;
                InstData::Load { ty, region, offset, imm }
            }
            Format::Store => {
                let (region, offset, imm) = self.address()?;
                self.punct(',', "`,`")?;
                InstData::Store { region, offset, imm, value: self.value()? }
            }
            Format::Call => {
                let func = FuncRef(self.entity("fn", "a function (`fn0`)")?);
                InstData::Call { func, args: self.value_list()? }
            }
            Format::CallImport => {
                let import = ImportRef(self.entity("imp", "an import (`imp0`)")?);
                InstData::CallImport { import, args: self.value_list()? }
            }
            Format::Jump => InstData::Jump { dest: self.block_call()? },
            Format::Brif => {
                let cond = self.value()?;
                self.punct(',', "`,`")?;
                let then_dest = self.block_call()?;
                self.punct(',', "`,`")?;
                InstData::Brif { cond, then_dest, else_dest: self.block_call()? }
            }
            Format::Return => {
                let arg = if self.is_entity("v") { Some(self.value()?) } else { None };
                InstData::Return { arg }
            }
            Format::Abort => InstData::Abort { code: self.int_in("an abort code")? },
        };
        // Calls may or may not produce a value (it depends on the callee); every other
        // format fixes it, and a mismatch is a syntax error rather than a verifier error.
        let produces = match format {
            Format::Call | Format::CallImport => None,
            Format::Store | Format::Jump | Format::Brif | Format::Return | Format::Abort => Some(false),
            _ => Some(true),
        };
        if let Some(required) = produces
            && required != result.is_some() {
                self.pos = at;
                return self.error(ParseErrorKind::ResultMismatch { opcode: op.name(), required });
            }
        self.end_of_line()?;
        Ok(Inst { result, data })
    }

    /// `rK[vN]` or `rK[vN + imm]`.
    fn address(&mut self) -> Result<(Region, Value, u32), ParseError> {
        let region = Region(self.entity("r", "a region (`r0`)")?);
        self.punct('[', "`[`")?;
        let offset = self.value()?;
        let imm = if self.eat_punct('+') { self.int_in("an offset")? } else { 0 };
        self.punct(']', "`]`")?;
        Ok((region, offset, imm))
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

impl core::error::Error for ParseError {}
