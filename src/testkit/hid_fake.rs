//! A scripted fake [`Transport`] for tests: it asserts the exact reports written, in order, and
//! plays the device's replies. Reads return `None` (a timeout) when the script has no reply next.

use crate::hid::{HidError, Report, Transport};
use std::collections::VecDeque;
use std::time::Duration;

/// One step of the script.
#[derive(Debug, Clone)]
pub enum Step {
    /// The next write must be exactly this report.
    Expect(Report),
    /// The next read returns this report.
    Reply(Report),
    /// The next write fails, as when the device is unplugged mid-transfer.
    WriteFails,
}

/// The fake device.
#[derive(Debug, Default)]
pub struct ScriptedTransport {
    steps: VecDeque<Step>,
    written: usize,
    /// Set when a write did not match the script (the write also fails).
    pub mismatch: Option<String>,
}

impl ScriptedTransport {
    /// A transport that plays these steps in order.
    pub fn new(steps: Vec<Step>) -> ScriptedTransport {
        ScriptedTransport {
            steps: steps.into(),
            ..Default::default()
        }
    }

    /// A reply report holding ASCII text, as the OnlyKey's `hidprint()` sends it.
    pub fn text_reply(text: &str) -> Report {
        let mut r = [0u8; 64];
        let n = text.len().min(64);
        r[..n].copy_from_slice(&text.as_bytes()[..n]);
        r
    }

    /// Steps not yet consumed.
    pub fn remaining(&self) -> usize {
        self.steps.len()
    }

    /// Reports written so far.
    pub fn written(&self) -> usize {
        self.written
    }
}

impl Transport for ScriptedTransport {
    fn write(&mut self, report: &Report) -> Result<(), HidError> {
        let n = self.written;
        self.written += 1;
        match self.steps.pop_front() {
            Some(Step::Expect(want)) if want == *report => Ok(()),
            Some(Step::WriteFails) => Err(HidError::Io(format!("write #{n}: device gone"))),
            other => {
                let msg = format!(
                    "write #{n}: got {}, script had {:?}",
                    hex::encode(report),
                    other.map(|s| match s {
                        Step::Expect(r) => format!("expect {}", hex::encode(r)),
                        Step::Reply(r) => format!("reply {}", hex::encode(r)),
                        Step::WriteFails => "a failing write".into(),
                    })
                );
                self.mismatch = Some(msg.clone());
                Err(HidError::Io(msg))
            }
        }
    }

    fn read(&mut self, _timeout: Duration) -> Result<Option<Report>, HidError> {
        match self.steps.front() {
            Some(Step::Reply(_)) => match self.steps.pop_front() {
                Some(Step::Reply(r)) => Ok(Some(r)),
                _ => unreachable!("checked above"),
            },
            _ => Ok(None),
        }
    }
}
