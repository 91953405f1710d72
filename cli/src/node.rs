//! `--set k=v` / `--config FILE` parsing shared by the stdin-driven
//! commands (`store-node`). The `node` daemon itself is in `daemon/`.

use sessionrepl::Config;

/// Parses `--set k=v` and `--config FILE` into a config.
pub fn parse_config(args: &[String]) -> Result<Config, String> {
    let mut cfg = Config::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--set" => {
                let kv = it.next().ok_or("--set needs key=value")?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--set {kv}: expected key=value"))?;
                cfg.set(k, v).map_err(|e| e.to_string())?;
            }
            "--config" => {
                let f = it.next().ok_or("--config needs a file")?;
                let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
                cfg.parse_file_text(&text)
                    .map_err(|e| format!("{f}: {e}"))?;
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(cfg)
}
