//! Line markers: a target script tags lines with `# LINE:<name>` so tests can name
//! the lines they expect instead of hard-coding numbers.

use std::collections::HashMap;
use std::path::Path;

/// Every `# LINE:<name>` marker of `script` and its 1-based line number.
pub fn line_markers(script: &Path) -> HashMap<String, i64> {
    let text = std::fs::read_to_string(script)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", script.display()));
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let name = line.split("# LINE:").nth(1)?.trim();
            Some((name.to_string(), i as i64 + 1))
        })
        .collect()
}
