//! `autoblock gen …` (hidden): writes the manual pages and shell completions from the command
//! line definition, so the packages ship documentation that cannot drift from the binary.
//!
//! It only renders the clap definition of [`crate::Cli`] to files; it does not install them,
//! talk to the kernel or read any configuration. `cargo xtask package` calls it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Subcommand, ValueEnum};
use clap_complete::Shell;

/// Manual section of every page: autoblock is a system administration command.
pub(crate) const MAN_SECTION: &str = "8";

/// Arguments of `autoblock gen`.
#[derive(Debug, Args)]
pub(crate) struct GenArgs {
    #[command(subcommand)]
    what: GenWhat,
}

#[derive(Debug, Subcommand)]
enum GenWhat {
    /// Manual pages: autoblock.8 and one autoblock-COMMAND.8 per subcommand.
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Shell completion scripts (autoblock.bash, _autoblock, autoblock.fish).
    Completions {
        /// Directory to write the scripts into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Only this shell (default: bash, zsh and fish).
        #[arg(long, value_enum)]
        shell: Vec<ShellArg>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ShellArg {
    Bash,
    Zsh,
    Fish,
}

impl From<ShellArg> for Shell {
    fn from(s: ShellArg) -> Shell {
        match s {
            ShellArg::Bash => Shell::Bash,
            ShellArg::Zsh => Shell::Zsh,
            ShellArg::Fish => Shell::Fish,
        }
    }
}

/// Runs `autoblock gen`, printing each file written to `out`.
pub(crate) fn run(args: &GenArgs, out: &mut impl std::io::Write) -> Result<()> {
    let files = match &args.what {
        GenWhat::Man { out: dir } => man_pages(dir)?,
        GenWhat::Completions { out: dir, shell } => {
            let shells: Vec<Shell> = if shell.is_empty() {
                vec![Shell::Bash, Shell::Zsh, Shell::Fish]
            } else {
                shell.iter().map(|&s| s.into()).collect()
            };
            completions(dir, &shells)?
        }
    };
    for f in files {
        writeln!(out, "{}", f.display())?;
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Writes autoblock.8 and one page per visible subcommand into `dir`; returns the paths.
pub(crate) fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    create_dir(dir)?;
    let mut cmd = crate::Cli::command().disable_help_subcommand(true);
    // Propagates the global options into every subcommand and names them `autoblock-NAME`.
    cmd.build();
    let version = env!("CARGO_PKG_VERSION");
    let mut pages = vec![cmd.clone()];
    pages.extend(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.clone().version(version)),
    );
    let mut written = Vec::new();
    for page in pages {
        let man = clap_mangen::Man::new(page)
            .section(MAN_SECTION)
            .manual("autoblock manual")
            .source(format!("autoblock {version}"));
        let path = man
            .generate_to(dir)
            .with_context(|| format!("writing a manual page into {}", dir.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes the completion script of each shell into `dir`; returns the paths.
pub(crate) fn completions(dir: &Path, shells: &[Shell]) -> Result<Vec<PathBuf>> {
    create_dir(dir)?;
    let mut cmd = crate::Cli::command();
    let mut written = Vec::new();
    for &shell in shells {
        let path = clap_complete::generate_to(shell, &mut cmd, "autoblock", dir)
            .with_context(|| format!("writing the {shell} completions into {}", dir.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(paths: &[PathBuf]) -> Vec<String> {
        let mut v: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand_and_the_global_options() {
        let dir = tempfile::tempdir().unwrap();
        let written = man_pages(dir.path()).unwrap();
        let got = names(&written);
        assert!(got.contains(&"autoblock.8".to_owned()), "{got:?}");
        let cmd = crate::Cli::command();
        for sub in cmd.get_subcommands() {
            let page = format!("autoblock-{}.8", sub.get_name());
            assert_eq!(
                got.contains(&page),
                !sub.is_hide_set(),
                "{page} in {got:?} (hidden: {})",
                sub.is_hide_set()
            );
        }
        assert!(!got.contains(&"autoblock-gen.8".to_owned()), "{got:?}");
        let main = fs::read_to_string(dir.path().join("autoblock.8")).unwrap();
        assert!(main.starts_with(".ie \\n(.g .ds Aq"), "not roff:\n{main}");
        assert!(main.contains(".TH autoblock 8"), "{main}");
        assert!(main.contains(env!("CARGO_PKG_VERSION")), "{main}");
        // A global option shows up in a subcommand's page.
        let block = fs::read_to_string(dir.path().join("autoblock-block.8")).unwrap();
        assert!(block.contains("layout"), "{block}");
        assert!(block.contains("timeout"), "{block}");
    }

    #[test]
    fn completions_for_three_shells_name_the_subcommands() {
        let dir = tempfile::tempdir().unwrap();
        let written = completions(dir.path(), &[Shell::Bash, Shell::Zsh, Shell::Fish]).unwrap();
        assert_eq!(
            names(&written),
            ["_autoblock", "autoblock.bash", "autoblock.fish"]
        );
        for p in &written {
            let text = fs::read_to_string(p).unwrap();
            for word in ["block", "unblock", "status", "layout"] {
                assert!(text.contains(word), "{word} missing in {}", p.display());
            }
        }
    }
}
