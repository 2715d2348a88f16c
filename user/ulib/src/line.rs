//! Line editing for the console: turns typed bytes into a line and the bytes to echo.
//!
//! The console is raw (the kernel does not echo), so the editor echoes what it accepts and
//! erases a character on screen with `BS space BS`. Pure logic, tested on the host.

use alloc::string::String;
use alloc::vec::Vec;

const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;
const CTRL_U: u8 = 0x15;
const CTRL_D: u8 = 0x04;
const ERASE: &[u8] = b"\x08 \x08";

/// Longest line kept; further bytes are dropped (and not echoed).
pub const MAX_LINE: usize = 1024;

/// What feeding one byte did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The line goes on.
    More,
    /// Enter: the line is complete.
    Done,
    /// Ctrl-D on an empty line: no more input.
    EndOfInput,
}

/// A line being typed.
#[derive(Default)]
pub struct LineEditor {
    bytes: Vec<u8>,
}

impl LineEditor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one typed byte; appends what to echo to `echo`.
    pub fn feed(&mut self, byte: u8, echo: &mut Vec<u8>) -> Status {
        match byte {
            b'\r' | b'\n' => {
                echo.extend_from_slice(b"\r\n");
                Status::Done
            }
            BACKSPACE | DELETE => {
                if self.erase_char() {
                    echo.extend_from_slice(ERASE);
                }
                Status::More
            }
            CTRL_U => {
                while self.erase_char() {
                    echo.extend_from_slice(ERASE);
                }
                Status::More
            }
            CTRL_D if self.bytes.is_empty() => Status::EndOfInput,
            // Other control characters (and escape sequences' ESC) are ignored: the line holds
            // only what was visibly typed.
            0..=0x1f => Status::More,
            _ if self.bytes.len() >= MAX_LINE => Status::More,
            _ => {
                self.bytes.push(byte);
                echo.push(byte);
                Status::More
            }
        }
    }

    /// Removes the last character (all bytes of a UTF-8 sequence); false if the line is empty.
    fn erase_char(&mut self) -> bool {
        let Some(mut last) = self.bytes.pop() else { return false };
        // Continuation bytes (10xxxxxx) belong to the character before them.
        while last & 0xc0 == 0x80 {
            match self.bytes.pop() {
                Some(b) => last = b,
                None => break,
            }
        }
        true
    }

    /// The line so far (invalid UTF-8 replaced).
    pub fn take(&mut self) -> String {
        let bytes = core::mem::take(&mut self.bytes);
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

/// Splits a command line into words separated by spaces or tabs; `"..."` groups words.
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' | '\t' if !quoted => {
                if in_word {
                    words.push(core::mem::take(&mut word));
                    in_word = false;
                }
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_bytes(input: &[u8]) -> (String, Vec<u8>, Status) {
        let mut ed = LineEditor::new();
        let mut echo = Vec::new();
        let mut status = Status::More;
        for &b in input {
            status = ed.feed(b, &mut echo);
            if status != Status::More {
                break;
            }
        }
        (ed.take(), echo, status)
    }

    #[test]
    fn backspace_erases_characters_and_echo() {
        let (line, echo, status) = type_bytes(b"lx\x7fs\r");
        assert_eq!(line, "ls");
        assert_eq!(echo, b"lx\x08 \x08s\r\n");
        assert_eq!(status, Status::Done);
    }

    #[test]
    fn backspace_on_empty_line_echoes_nothing() {
        let (line, echo, _) = type_bytes(b"\x08\x08a\n");
        assert_eq!(line, "a");
        assert_eq!(echo, b"a\r\n");
    }

    #[test]
    fn backspace_removes_a_whole_utf8_character() {
        let (line, _, _) = type_bytes("aé\x08\n".as_bytes());
        assert_eq!(line, "a");
    }

    #[test]
    fn ctrl_u_kills_the_line_and_ctrl_d_ends_input() {
        let (line, _, _) = type_bytes(b"abc\x15xy\n");
        assert_eq!(line, "xy");
        assert_eq!(type_bytes(b"\x04").2, Status::EndOfInput);
        // Ctrl-D inside a line is ignored.
        assert_eq!(type_bytes(b"a\x04b\n").0, "ab");
    }

    #[test]
    fn words_split_on_blanks_and_quotes_group() {
        assert_eq!(split_words("  run  exitcode 3 "), ["run", "exitcode", "3"]);
        assert_eq!(split_words("load \"a b\" x"), ["load", "a b", "x"]);
        assert_eq!(split_words("say \"\""), ["say", ""]);
        assert!(split_words("   ").is_empty());
    }
}
