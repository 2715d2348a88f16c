//! The printer: `Display` for the IR types, producing the text format.
//!
//! The output is exactly what [`super::parse`] reads back: `parse(&m.to_string()) == Ok(m)`
//! for every module whose names and values the text syntax can express (which the property
//! tests check on generated modules).

use core::fmt::{self, Display, Formatter, Write};

use crate::ir::{BlockCall, BlockData, Function, Import, Inst, InstData, Module};

fn list<T: Display>(f: &mut Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{x}")?;
    }
    Ok(())
}

impl Display for BlockCall {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.block)?;
        if !self.args.is_empty() {
            f.write_str("(")?;
            list(f, &self.args)?;
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl Display for InstData {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let op = self.opcode();
        match self {
            InstData::Iconst { ty, imm } => write!(f, "{op}.{ty} {imm}"),
            InstData::Binary { args, .. } => write!(f, "{op} {}, {}", args[0], args[1]),
            InstData::Unary { arg, .. } => write!(f, "{op} {arg}"),
            InstData::Icmp { cond, args } => write!(f, "{op} {cond} {}, {}", args[0], args[1]),
            InstData::Select { args } => write!(f, "{op} {}, {}, {}", args[0], args[1], args[2]),
            InstData::Convert { ty, arg, .. } => write!(f, "{op}.{ty} {arg}"),
            InstData::Load { ty, region, offset, imm } => {
                write!(f, "{op}.{ty} {region}[{offset}")?;
                if *imm != 0 {
                    write!(f, " + {imm}")?;
                }
                f.write_str("]")
            }
            InstData::Store { region, offset, imm, value } => {
                write!(f, "{op} {region}[{offset}")?;
                if *imm != 0 {
                    write!(f, " + {imm}")?;
                }
                write!(f, "], {value}")
            }
            InstData::Call { func, args } => {
                write!(f, "{op} {func}(")?;
                list(f, args)?;
                f.write_str(")")
            }
            InstData::CallImport { import, args } => {
                write!(f, "{op} {import}(")?;
                list(f, args)?;
                f.write_str(")")
            }
            InstData::Jump { dest } => write!(f, "{op} {dest}"),
            InstData::Brif { cond, then_dest, else_dest } => {
                write!(f, "{op} {cond}, {then_dest}, {else_dest}")
            }
            InstData::Return { arg: Some(v) } => write!(f, "{op} {v}"),
            InstData::Return { arg: None } => write!(f, "{op}"),
            InstData::Abort { code } => write!(f, "{op} {code}"),
        }
    }
}

impl Display for Inst {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(r) = self.result {
            write!(f, "{r} = ")?;
        }
        write!(f, "{}", self.data)
    }
}

/// Prints the block header line and the indented instructions; the block's own name is not
/// part of `BlockData`, so this prints `bN` through [`Function`]'s `Display`.
fn block(f: &mut Formatter<'_>, index: usize, b: &BlockData) -> fmt::Result {
    write!(f, "b{index}")?;
    if !b.params.is_empty() {
        f.write_str("(")?;
        for (i, p) in b.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}: {}", p.value, p.ty)?;
        }
        f.write_str(")")?;
    }
    f.write_str(":\n")?;
    for inst in &b.insts {
        writeln!(f, "    {inst}")?;
    }
    Ok(())
}

/// A function needs its index to print its header; this pairs them.
pub struct FunctionWithIndex<'a>(pub usize, pub &'a Function);

impl Display for FunctionWithIndex<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let FunctionWithIndex(index, func) = *self;
        write!(f, "function fn{index}")?;
        if !func.name.is_empty() {
            write!(f, " {}", func.name)?;
        }
        writeln!(f, "{} {{", func.sig)?;
        for (i, b) in func.blocks.iter().enumerate() {
            block(f, i, b)?;
        }
        f.write_str("}\n")
    }
}

impl Display for Import {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, self.sig)
    }
}

impl Display for Module {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "graft {}", self.point)?;
        writeln!(
            f,
            "resources data_size={} fuel={}",
            self.resources.data_size, self.resources.fuel
        )?;
        if !self.data.is_empty() {
            f.write_str("data \"")?;
            for byte in &self.data {
                write!(f, "{byte:02x}")?;
            }
            f.write_str("\"\n")?;
        }
        for (i, imp) in self.imports.iter().enumerate() {
            writeln!(f, "import imp{i} = {imp}")?;
        }
        for (i, func) in self.functions.iter().enumerate() {
            f.write_char('\n')?;
            write!(f, "{}", FunctionWithIndex(i, func))?;
        }
        Ok(())
    }
}
