//! `coldkeep hid list`: the known hardware keys plugged in, and whether coldkeep may open them.

use crate::error::Exit;
use crate::hid;
use crate::output::{Table, print_json_list};

/// Runs `coldkeep hid list`.
pub fn list(json: bool) -> anyhow::Result<Exit> {
    let all = hid::enumerate()?;
    let found = hid::known(&all);
    if json {
        print_json_list(&found)?;
    } else if found.is_empty() {
        println!(
            "No known hardware key found ({}). If one is plugged in: check the cable and, for access, \
             the udev rules in the README.",
            hid::DEVICES
                .iter()
                .map(|d| {
                    let ids: Vec<String> = d.ids().iter().map(|(v, p)| format!("{v:04x}:{p:04x}")).collect();
                    format!("{} {}", d.model(), ids.join("/"))
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        let mut table = Table::new(&["MODEL", "PATH", "SERIAL", "INTERFACE", "USAGE PAGE", "ACCESS"]);
        for f in &found {
            table.row(vec![
                f.model.to_string(),
                f.device.path.clone(),
                f.device.serial.clone().unwrap_or_else(|| "-".into()),
                f.device.interface.to_string(),
                format!("0x{:04x}", f.device.usage_page),
                if f.accessible {
                    "ok".into()
                } else {
                    "NO PERMISSION (udev rules, see README)".into()
                },
            ]);
        }
        print!("{}", table.render());
        for f in &found {
            println!(
                "{}: backup: {}; restore: {}",
                f.model, f.capabilities.backup, f.capabilities.restore
            );
        }
    }
    Ok(Exit::Ok)
}
