//! A small assembler for classic BPF with forward labels.
//!
//! Classic BPF jumps are relative and forward-only, and a conditional jump's offsets are one
//! byte each. The assembler lets the filter be written with named targets and refuses to emit a
//! program whose jumps do not fit, rather than truncating an offset.

use super::SeccompError;

/// The kernel's limit on the number of instructions in one filter (`BPF_MAXINSNS`).
pub(crate) const MAX_INSNS: usize = 4096;

// Opcodes: class | size | mode, or class | operation | source, as in `linux/filter.h`.
/// BPF_LD | BPF_W (0) | BPF_ABS.
pub(crate) const LD_W_ABS: u16 = 0x20;
/// BPF_ALU | BPF_AND | BPF_K (0).
pub(crate) const ALU_AND_K: u16 = 0x04 | 0x50;
/// BPF_JMP | BPF_JEQ | BPF_K (0).
pub(crate) const JMP_JEQ_K: u16 = 0x05 | 0x10;
/// BPF_JMP | BPF_JSET | BPF_K (0).
pub(crate) const JMP_JSET_K: u16 = 0x05 | 0x40;
/// BPF_RET | BPF_K (0).
pub(crate) const RET_K: u16 = 0x06;

/// A place in the program that jumps can name before it is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label(usize);

/// Where a conditional jump goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The next instruction.
    Next,
    /// A label bound later in the program.
    At(Label),
}

#[derive(Debug, Clone, Copy)]
enum Insn {
    Stmt {
        code: u16,
        k: u32,
    },
    Jump {
        code: u16,
        k: u32,
        jt: Target,
        jf: Target,
    },
}

/// A program under construction.
#[derive(Debug, Default)]
pub(crate) struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A new, unbound label.
    pub(crate) fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next instruction emitted.
    pub(crate) fn bind(&mut self, label: Label) {
        if let Some(slot) = self.labels.get_mut(label.0) {
            *slot = Some(self.insns.len());
        }
    }

    /// Loads the 32-bit word at `offset` of `struct seccomp_data` into the accumulator.
    pub(crate) fn load(&mut self, offset: u32) {
        self.stmt(LD_W_ABS, offset);
    }

    pub(crate) fn and(&mut self, k: u32) {
        self.stmt(ALU_AND_K, k);
    }

    pub(crate) fn ret(&mut self, action: u32) {
        self.stmt(RET_K, action);
    }

    pub(crate) fn jeq(&mut self, k: u32, jt: Target, jf: Target) {
        self.jump(JMP_JEQ_K, k, jt, jf);
    }

    pub(crate) fn jset(&mut self, k: u32, jt: Target, jf: Target) {
        self.jump(JMP_JSET_K, k, jt, jf);
    }

    fn stmt(&mut self, code: u16, k: u32) {
        self.insns.push(Insn::Stmt { code, k });
    }

    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.insns.push(Insn::Jump { code, k, jt, jf });
    }

    /// Resolves every label and returns the kernel's instruction format.
    pub(crate) fn finish(self) -> Result<Vec<libc::sock_filter>, SeccompError> {
        if self.insns.len() > MAX_INSNS {
            return Err(SeccompError::ProgramTooLong {
                len: self.insns.len(),
                max: MAX_INSNS,
            });
        }
        let offset = |from: usize, target: Target| -> Result<u8, SeccompError> {
            let Target::At(label) = target else {
                return Ok(0);
            };
            let to = self
                .labels
                .get(label.0)
                .copied()
                .flatten()
                .ok_or(SeccompError::UnboundLabel)?;
            // Jumps are relative to the instruction after the jump and only go forward.
            let distance = to
                .checked_sub(from + 1)
                .ok_or(SeccompError::BackwardJump { from, to })?;
            u8::try_from(distance).map_err(|_| SeccompError::JumpTooFar { from, distance })
        };
        self.insns
            .iter()
            .enumerate()
            .map(|(i, insn)| match *insn {
                Insn::Stmt { code, k } => Ok(libc::sock_filter {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                }),
                Insn::Jump { code, k, jt, jf } => Ok(libc::sock_filter {
                    code,
                    jt: offset(i, jt)?,
                    jf: offset(i, jf)?,
                    k,
                }),
            })
            .collect()
    }
}

/// Runs a program the way the kernel would, over a `struct seccomp_data` given as its words.
///
/// Only the instructions this module emits are understood; anything else fails the test that
/// reached it.
#[cfg(test)]
pub(crate) fn run(program: &[libc::sock_filter], data: &[u32; 16]) -> u32 {
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let insn = program[pc];
        pc += 1;
        let jump = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
        match insn.code {
            LD_W_ABS => {
                assert_eq!(insn.k % 4, 0, "unaligned load");
                acc = data[insn.k as usize / 4];
            }
            ALU_AND_K => acc &= insn.k,
            JMP_JEQ_K => pc += jump(acc == insn.k),
            JMP_JSET_K => pc += jump(acc & insn.k != 0),
            RET_K => return insn.k,
            other => panic!("instruction {other:#x} is not understood"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_to_forward_offsets() {
        let mut asm = Asm::new();
        let yes = asm.label();
        asm.load(0);
        asm.jeq(7, Target::At(yes), Target::Next);
        asm.ret(1);
        asm.ret(2);
        asm.bind(yes);
        asm.ret(3);
        let program = asm.finish().unwrap();
        assert_eq!((program[1].jt, program[1].jf), (2, 0));
        let mut data = [0u32; 16];
        assert_eq!(run(&program, &data), 1);
        data[0] = 7;
        assert_eq!(run(&program, &data), 3);
    }

    #[test]
    fn a_jump_beyond_255_is_refused() {
        let mut asm = Asm::new();
        let far = asm.label();
        asm.jeq(1, Target::At(far), Target::Next);
        for _ in 0..256 {
            asm.ret(0);
        }
        asm.bind(far);
        asm.ret(1);
        assert!(matches!(
            asm.finish(),
            Err(SeccompError::JumpTooFar {
                from: 0,
                distance: 256
            })
        ));
    }

    #[test]
    fn a_jump_of_exactly_255_is_emitted() {
        let mut asm = Asm::new();
        let far = asm.label();
        asm.jeq(1, Target::Next, Target::At(far));
        for _ in 0..255 {
            asm.ret(0);
        }
        asm.bind(far);
        asm.ret(1);
        let program = asm.finish().unwrap();
        assert_eq!(program[0].jf, 255);
        assert_eq!(run(&program, &[0; 16]), 1);
    }

    #[test]
    fn unbound_labels_and_long_programs_are_errors() {
        let mut asm = Asm::new();
        let nowhere = asm.label();
        asm.jeq(1, Target::At(nowhere), Target::Next);
        asm.ret(0);
        assert!(matches!(asm.finish(), Err(SeccompError::UnboundLabel)));

        let mut asm = Asm::new();
        for _ in 0..=MAX_INSNS {
            asm.ret(0);
        }
        assert!(matches!(
            asm.finish(),
            Err(SeccompError::ProgramTooLong {
                len: 4097,
                max: 4096
            })
        ));
    }
}
