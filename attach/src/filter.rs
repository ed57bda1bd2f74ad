//! Which code is traced: `--include` / `--exclude` module globs on top of a default
//! that traces the program's own code.
//!
//! A frame is traced when its module matches an `--include` glob or belongs to the
//! program's own code, and matches no `--exclude` glob (an exclude always wins). The
//! program's own code ([`ProgramScope`]) is the `__main__` module and every file under
//! the target's working directory that is not in the standard library, in a
//! `site-packages` or `dist-packages` folder, or in a virtual environment (a folder
//! with a `pyvenv.cfg` above the file). `--include` adds to that default, so
//! `--include 'json*'` traces the program and `json`; `--include '*'` traces
//! everything.
//!
//! Globs match whole module names: `*` is any run of characters (dots included), `?`
//! one character, and a glob ending in `.*` also matches the package itself
//! (`myapp.*` matches `myapp` and `myapp.billing`), so the `--include` that
//! `tracer query --gaps` suggests for module `json` (`json.*`) traces `json` too.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::error::Result;
use crate::memory::ProcessMemory;
use crate::objects;
use crate::process::proc_error;
use crate::walker::Walker;

/// A pattern the user gave that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("empty module pattern given to {0}")]
    Empty(&'static str),
}

/// A module-name glob (`myapp.*`, `*`, `json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleGlob {
    pattern: Vec<char>,
}

impl ModuleGlob {
    /// Compiles `pattern`; `option` names the flag it came from for the error.
    pub fn new(pattern: &str, option: &'static str) -> Result<ModuleGlob, FilterError> {
        if pattern.trim().is_empty() {
            return Err(FilterError::Empty(option));
        }
        Ok(ModuleGlob {
            pattern: pattern.trim().chars().collect(),
        })
    }

    /// Whether `module` matches the glob (a `pkg.*` glob also matches `pkg`).
    pub fn matches(&self, module: &str) -> bool {
        let name: Vec<char> = module.chars().collect();
        if glob_match(&self.pattern, &name) {
            return true;
        }
        match self.pattern.strip_suffix(&['.', '*']) {
            Some(package) => glob_match(package, &name),
            None => false,
        }
    }
}

/// `*` and `?` matching over whole strings, iterative with one backtrack point.
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// What "the program's own code" means for one target, as paths the target sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramScope {
    /// The folder through which the target's paths are looked at on this machine
    /// (`/proc/PID/root`, which differs from `/` for a process in a container).
    pub root: PathBuf,
    /// The target's working directory.
    pub cwd: PathBuf,
    /// Standard-library folders (the folder of `os.py`, `PREFIX/lib/python3.X`).
    pub stdlib: Vec<PathBuf>,
}

impl ProgramScope {
    /// The scope of the process `walker` reads: its `/proc/PID/cwd`, and its standard
    /// library found from `os.__file__` in the target and from the interpreter's
    /// prefix (`PREFIX/bin/python3.X` → `PREFIX/lib/python3.X`).
    pub fn of_process(walker: &Walker) -> Result<ProgramScope> {
        let process = &walker.process;
        // Through the task the process is read by (its main thread may have ended).
        let pid = process.mem.pid();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map_err(|e| proc_error(pid, e))?;
        let mut stdlib = Vec::new();
        if let Some(os_file) = module_file(walker, "os") {
            if let Some(dir) = Path::new(&os_file).parent() {
                stdlib.push(dir.to_path_buf());
            }
        }
        let exe = Path::new(&process.executable);
        if let Some(prefix) = exe.parent().and_then(Path::parent) {
            let dir = prefix
                .join("lib")
                .join(format!("python3.{}", process.version.minor));
            if !stdlib.contains(&dir) {
                stdlib.push(dir);
            }
        }
        Ok(ProgramScope {
            root: PathBuf::from(format!("/proc/{pid}/root")),
            cwd,
            stdlib,
        })
    }
}

/// `sys.modules[name].__file__` in the target, when it can be read.
fn module_file(walker: &Walker, name: &str) -> Option<String> {
    let mem = &walker.process.mem;
    let layout = walker.layout();
    let interp = walker.process.interpreter().ok()?;
    let modules = mem.read_u64(interp + layout.interpreter.modules).ok()?;
    let module = objects::dict_get_str(mem, layout, modules, name).ok()??;
    let dict = mem.read_u64(module + layout.object.module_dict).ok()?;
    let file = objects::dict_get_str(mem, layout, dict, "__file__").ok()??;
    objects::read_checked_str(mem, layout, file).ok()
}

/// The `--include` / `--exclude` decision for modules and files, with the program's
/// own code included by default.
#[derive(Debug, Clone)]
pub struct ModuleFilter {
    include: Vec<ModuleGlob>,
    exclude: Vec<ModuleGlob>,
    scope: ProgramScope,
    /// Folder (as the target sees it) to whether a `pyvenv.cfg` sits in it.
    venv_dirs: HashMap<PathBuf, bool>,
}

impl ModuleFilter {
    /// A filter from the `--include` and `--exclude` patterns and the target's scope.
    pub fn new(
        include: &[String],
        exclude: &[String],
        scope: ProgramScope,
    ) -> Result<ModuleFilter, FilterError> {
        let include = include
            .iter()
            .map(|p| ModuleGlob::new(p, "--include"))
            .collect::<Result<Vec<_>, _>>()?;
        let exclude = exclude
            .iter()
            .map(|p| ModuleGlob::new(p, "--exclude"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ModuleFilter {
            include,
            exclude,
            scope,
            venv_dirs: HashMap::new(),
        })
    }

    /// Whether code of `module`, loaded from `file`, is traced. Costs file-system
    /// look-ups for a new folder, so callers cache the answer per code object.
    pub fn includes(&mut self, module: &str, file: &str) -> bool {
        if self.exclude.iter().any(|g| g.matches(module)) {
            return false;
        }
        self.include.iter().any(|g| g.matches(module)) || self.is_program_code(module, file)
    }

    /// The default: `__main__`, and files under the working directory that are not
    /// the standard library, installed packages or a virtual environment.
    pub fn is_program_code(&mut self, module: &str, file: &str) -> bool {
        if module == "__main__" {
            return true;
        }
        if file.starts_with('<') || file.is_empty() {
            return false;
        }
        let path = normalize(&self.scope.cwd.join(file));
        if !path.starts_with(&self.scope.cwd) {
            return false;
        }
        if self.scope.stdlib.iter().any(|dir| path.starts_with(dir)) {
            return false;
        }
        let installed = path.components().any(|c| {
            matches!(c, Component::Normal(name) if name == "site-packages" || name == "dist-packages")
        });
        if installed {
            return false;
        }
        !path.ancestors().skip(1).any(|dir| self.has_pyvenv_cfg(dir))
    }

    fn has_pyvenv_cfg(&mut self, dir: &Path) -> bool {
        if let Some(&known) = self.venv_dirs.get(dir) {
            return known;
        }
        let relative = dir.strip_prefix("/").unwrap_or(dir);
        let found = self.scope.root.join(relative).join("pyvenv.cfg").is_file();
        self.venv_dirs.insert(dir.to_path_buf(), found);
        found
    }
}

/// `path` with `.` and `..` resolved lexically (the target's paths cannot be
/// canonicalised here: they live under its root).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> ModuleGlob {
        ModuleGlob::new(p, "--include").expect("valid glob")
    }

    #[test]
    fn globs_match_whole_module_names() {
        assert!(glob("json").matches("json"));
        assert!(!glob("json").matches("json.decoder"));
        assert!(!glob("json").matches("simplejson"));
        assert!(glob("myapp.*").matches("myapp.billing"));
        assert!(glob("myapp.*").matches("myapp.billing.tax"));
        assert!(
            glob("myapp.*").matches("myapp"),
            "a package glob matches the package"
        );
        assert!(!glob("myapp.*").matches("myapplication"));
        assert!(glob("*").matches("anything.at.all"));
        assert!(glob("*").matches(""));
        assert!(glob("*.tests").matches("pkg.sub.tests"));
        assert!(!glob("*.tests").matches("pkg.tests.unit"));
        assert!(glob("app?").matches("app1"));
        assert!(!glob("app?").matches("app"));
        assert!(glob("a*b*c").matches("aXXbYYc"));
        assert!(!glob("a*b*c").matches("aXXbYY"));
        assert_eq!(
            ModuleGlob::new("  ", "--exclude"),
            Err(FilterError::Empty("--exclude"))
        );
    }

    fn scope(root: &Path) -> ProgramScope {
        ProgramScope {
            root: root.to_path_buf(),
            cwd: PathBuf::from("/srv/app"),
            stdlib: vec![PathBuf::from("/usr/lib/python3.11")],
        }
    }

    #[test]
    fn default_scope_is_the_programs_own_files() {
        let root = std::env::temp_dir().join(format!("tracer-filter-test-{}", std::process::id()));
        let venv = root.join("srv/app/.venv");
        std::fs::create_dir_all(&venv).expect("create fake venv");
        std::fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\n").expect("write pyvenv.cfg");
        let mut filter = ModuleFilter::new(&[], &[], scope(&root)).expect("filter");
        assert!(filter.includes("__main__", "<string>"));
        assert!(filter.includes("app.billing", "/srv/app/app/billing.py"));
        assert!(
            filter.includes("billing", "app/billing.py"),
            "relative to the cwd"
        );
        assert!(!filter.includes("json", "/usr/lib/python3.11/json/__init__.py"));
        assert!(!filter.includes("os", "<frozen os>"));
        assert!(!filter.includes("other", "/srv/other/other.py"));
        assert!(!filter.includes("escape", "/srv/app/../other/x.py"));
        assert!(!filter.includes("requests", "/srv/app/lib/site-packages/requests/api.py"));
        assert!(!filter.includes("six", "/srv/app/deb/dist-packages/six.py"));
        assert!(!filter.includes("tool", "/srv/app/.venv/bin/tool.py"));
        assert!(!filter.includes("pkg", "/srv/app/.venv/lib/python3.11/pkg/x.py"));
        std::fs::remove_dir_all(&root).expect("clean up");
    }

    #[test]
    fn include_adds_and_exclude_wins() {
        let root = std::env::temp_dir();
        let include = vec!["json.*".to_string(), "requests".to_string()];
        let exclude = vec!["app.generated.*".to_string(), "json.decoder".to_string()];
        let mut filter = ModuleFilter::new(&include, &exclude, scope(&root)).expect("filter");
        assert!(filter.includes("json", "/usr/lib/python3.11/json/__init__.py"));
        assert!(filter.includes("json.encoder", "/usr/lib/python3.11/json/encoder.py"));
        assert!(!filter.includes("json.decoder", "/usr/lib/python3.11/json/decoder.py"));
        assert!(filter.includes("requests", "/x/site-packages/requests/__init__.py"));
        assert!(filter.includes("app.main", "/srv/app/app/main.py"));
        assert!(!filter.includes("app.generated.models", "/srv/app/app/generated/models.py"));
        assert!(!filter.includes("os", "/usr/lib/python3.11/os.py"));

        let mut everything =
            ModuleFilter::new(&["*".to_string()], &["__main__".to_string()], scope(&root))
                .expect("filter");
        assert!(everything.includes("os", "/usr/lib/python3.11/os.py"));
        assert!(!everything.includes("__main__", "/srv/app/main.py"));
        assert!(ModuleFilter::new(&[String::new()], &[], scope(&root)).is_err());
    }
}
