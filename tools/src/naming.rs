//! `general.name`, `general.basename`, `general.finetune`, `general.version` and
//! `general.size_label` guessed from the checkpoint's directory name and parameter count, as
//! gguf-py's `Metadata.get_model_id_components` and `size_label` do.

/// The naming keys, each optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelName {
    pub name: Option<String>,
    pub version: Option<String>,
    pub finetune: Option<String>,
    pub basename: Option<String>,
    pub size_label: Option<String>,
}

fn is_version(p: &str) -> bool {
    let s = p.to_ascii_lowercase();
    let s = s
        .strip_prefix("iter")
        .or_else(|| s.strip_prefix('v'))
        .unwrap_or(&s)
        .to_string();
    !s.is_empty()
        && s.split('.')
            .all(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

fn is_type(p: &str) -> bool {
    // gguf-py: `i?q\d(_\w)*|b?fp?(16|32)`
    let s = p.to_ascii_lowercase();
    let q = s.strip_prefix('i').unwrap_or(&s);
    if let Some(r) = q.strip_prefix('q') {
        let mut ch = r.chars();
        if ch.next().is_some_and(|c| c.is_ascii_digit()) {
            let rest = ch.as_str();
            return rest.is_empty()
                || (rest.starts_with('_')
                    && !rest.ends_with('_')
                    && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        }
        return false;
    }
    let f = s.strip_prefix('b').unwrap_or(&s);
    let Some(f) = f.strip_prefix('f') else {
        return false;
    };
    let f = f.strip_prefix('p').unwrap_or(f);
    f == "16" || f == "32"
}

/// A size like `135m`, `7B`, `8x7B`, `1.5b` (normalized to upper-case suffix), or None.
fn size_part(p: &str) -> Option<String> {
    let lower = p.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "small" | "mini" | "medium" | "large" | "xl" | "xxl"
    ) {
        return Some(p.to_string());
    }
    if !lower.ends_with(|c: char| c.is_ascii()) {
        return None;
    }
    let (body, suffix) = lower.split_at(lower.len().checked_sub(1)?);
    if !"kmbt".contains(suffix) || body.is_empty() {
        return None;
    }
    let body_ok = {
        let b = body
            .split_once('x')
            .map(|(n, r)| {
                if n.bytes().all(|c| c.is_ascii_digit()) && !n.is_empty() {
                    r
                } else {
                    "!"
                }
            })
            .unwrap_or(body);
        let b = b.replace('_', ".");
        let mut it = b.splitn(2, '.');
        let int = it.next().unwrap_or("");
        let frac = it.next();
        !int.is_empty()
            && int.bytes().all(|c| c.is_ascii_digit())
            && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()))
    };
    if !body_ok {
        return None;
    }
    let mut s = p.replace('_', ".");
    let n = s.len();
    s.replace_range(n - 1.., &suffix.to_ascii_uppercase());
    Some(s)
}

/// gguf-py's `model_weight_count_rounded_notation(n, min_digits=2)`.
pub fn size_label(n_params: u64) -> String {
    let n = n_params as f64;
    let (scaled, suffix) = if n > 1e12 {
        (n * 1e-12, "T")
    } else if n > 1e9 {
        (n * 1e-9, "B")
    } else if n > 1e6 {
        (n * 1e-6, "M")
    } else {
        (n * 1e-3, "K")
    };
    let digits = format!("{}", scaled.round() as u64).len();
    let fix = 2usize.saturating_sub(digits);
    format!("{scaled:.fix$}{suffix}")
}

/// gguf-py's `Metadata.id_to_title`.
fn id_to_title(s: &str) -> String {
    s.replace('-', " ")
        .split_whitespace()
        .map(|w| {
            let lower = w.chars().any(|c| c.is_lowercase()) && !w.chars().any(|c| c.is_uppercase());
            let versionish = w.starts_with(|c: char| c.is_ascii_digit())
                || (w.starts_with('v') && is_version(w));
            if lower && !versionish {
                let mut out = String::new();
                let mut prev_alpha = false;
                for c in w.chars() {
                    if c.is_alphabetic() {
                        if prev_alpha {
                            out.extend(c.to_lowercase());
                        } else {
                            out.extend(c.to_uppercase());
                        }
                        prev_alpha = true;
                    } else {
                        out.push(c);
                        prev_alpha = false;
                    }
                }
                out
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The naming keys for a model directory called `dir_name` with `n_params` parameters.
pub fn model_name(dir_name: &str, n_params: u64) -> ModelName {
    let mut out = ModelName {
        name: Some(id_to_title(dir_name)),
        ..Default::default()
    };
    let mut parts: Vec<String> = dir_name.split('-').map(str::to_string).collect();
    let mut kinds: Vec<Vec<&str>> = vec![Vec::new(); parts.len()];
    for (i, p) in parts.iter_mut().enumerate() {
        if p.is_empty() {
            continue;
        }
        if is_version(p) {
            kinds[i].push("version");
        } else if is_type(p) {
            kinds[i].push("type");
            *p = p.to_ascii_uppercase();
        } else if let Some(s) = (i > 0).then(|| size_part(p)).flatten() {
            let num: Option<f64> = s[..s.len() - 1]
                .split('x')
                .next_back()
                .and_then(|n| n.parse().ok());
            let mult = match s.as_bytes()[s.len() - 1] {
                b'K' => 1e3,
                b'M' => 1e6,
                b'B' => 1e9,
                b'T' => 1e12,
                _ => 0.0,
            };
            if let Some(v) = num.map(|v| v * mult).filter(|_| mult > 0.0) {
                let total = n_params as f64;
                if n_params == 0 || (v - total).abs() < 0.02 * total || v > total {
                    kinds[i].push("size_label");
                }
            }
            *p = s;
        } else if i > 0
            && matches!(
                p.to_ascii_lowercase().as_str(),
                "chat" | "instruct" | "vision" | "lora"
            )
        {
            kinds[i].push("finetune");
        }
    }
    let mut at_start = true;
    for (p, k) in parts.iter().zip(kinds.iter_mut()) {
        if at_start
            && ((k.is_empty() && p.starts_with(|c: char| c.is_alphabetic()))
                || k.contains(&"version"))
        {
            k.push("basename");
        } else {
            at_start = false;
            if k.is_empty() {
                k.push("finetune");
            }
        }
    }
    for k in kinds.iter_mut().rev() {
        if k.contains(&"basename") && k.len() > 1 {
            k.retain(|x| *x != "basename");
        } else {
            break;
        }
    }
    let join = |want: &str, exclude: Option<&str>| {
        let v: Vec<&str> = parts
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| k.contains(&want) && exclude.is_none_or(|e| !k.contains(&e)))
            .map(|(p, _)| p.as_str())
            .collect();
        let mut seen: Vec<&str> = Vec::new();
        for x in v {
            if !seen.contains(&x) {
                seen.push(x);
            }
        }
        (!seen.is_empty()).then(|| seen.join("-"))
    };
    out.basename = join("basename", None);
    out.finetune = join("finetune", None);
    out.version = join("version", Some("basename"));
    out.size_label =
        join("size_label", None).or_else(|| (n_params > 0).then(|| size_label(n_params)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_names() {
        let m = model_name("smollm2-135m", 134_515_008);
        assert_eq!(m.name.as_deref(), Some("Smollm2 135m"));
        assert_eq!(m.basename.as_deref(), Some("smollm2"));
        assert_eq!(m.size_label.as_deref(), Some("135M"));
        assert_eq!(m.version, None);
        assert_eq!(m.finetune, None);
        let m = model_name("synth-llama-256", 62_918_144);
        assert_eq!(m.name.as_deref(), Some("Synth Llama 256"));
        assert_eq!(m.basename.as_deref(), Some("synth-llama"));
        assert_eq!(m.version.as_deref(), Some("256"));
        assert_eq!(m.size_label.as_deref(), Some("63M"));
        let m = model_name("Qwen2.5-0.5B-Instruct", 494_032_768);
        assert_eq!(m.finetune.as_deref(), Some("Instruct"));
        assert_eq!(m.size_label.as_deref(), Some("0.5B"));
        // Non-ASCII parts are kept as they are.
        let m = model_name("modèle-é-7b", 7_000_000_000);
        assert_eq!(m.size_label.as_deref(), Some("7B"));
    }
}
