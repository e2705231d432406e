//! Progress bars for commands that can run long: on standard error, and only when it is a
//! terminal, so that pipes and logs never see them.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar for work of `total` bytes, labelled `label`, if standard error is a terminal.
pub fn bytes(label: &str, total: u64) -> Option<ProgressBar> {
    styled(
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
        &format!("{label} [{{wide_bar}}] {{bytes}}/{{total_bytes}} eta {{eta}}"),
    )
}

/// A spinner for work of unknown length that shows what is being done (its message).
pub fn spinner(label: &str) -> Option<ProgressBar> {
    let bar = styled(
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        &format!("{{spinner}} {label}: {{msg}} ({{elapsed}})"),
    )?;
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

fn styled(bar: ProgressBar, template: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}
