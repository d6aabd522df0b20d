//! Splitting a COMMAND into words the way `sh` does, without running a
//! shell: quotes and backslashes only. Nothing is expanded (`$HOME`, `*`
//! and `~` stay as written) and there are no pipes or redirections; for
//! those, run `sh -c '...'` as the program.

/// The words of `s`: blanks separate words; `'...'` keeps everything
/// literally; `"..."` keeps everything but `\` before `"`, `\`, `$` or
/// `` ` ``; a `\` outside quotes keeps the next character (and drops a
/// newline, as a line continuation).
pub fn split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(format!("{s:?}: a single quote is not closed")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(format!("{s:?}: a double quote is not closed")),
                        },
                        Some(c) => w.push(c),
                        None => return Err(format!("{s:?}: a double quote is not closed")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err(format!("{s:?}: ends with a lone backslash")),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    fn ok(s: &str) -> Vec<String> {
        split(s).unwrap()
    }

    #[test]
    fn splits_like_sh() {
        assert_eq!(ok("sleep  30"), ["sleep", "30"]);
        assert_eq!(ok(r#"sh -c "echo hello world""#), ["sh", "-c", "echo hello world"]);
        assert_eq!(ok("sh -c 'echo \"hi\"; exit 1'"), ["sh", "-c", "echo \"hi\"; exit 1"]);
        assert_eq!(ok(r"echo a\ b c"), ["echo", "a b", "c"]);
        assert_eq!(ok(r#"echo "a\"b" "\$x" "\n""#), ["echo", "a\"b", "$x", "\\n"]);
        assert_eq!(ok("echo 'it'\\''s'"), ["echo", "it's"]);
        assert_eq!(ok("echo '' \"\""), ["echo", "", ""]);
        assert_eq!(ok("a\\\nb"), ["ab"]);
        assert_eq!(ok("echo $HOME *"), ["echo", "$HOME", "*"]);
        assert_eq!(ok("  "), Vec::<String>::new());
    }

    #[test]
    fn unclosed_quotes_and_a_lone_backslash_are_errors() {
        assert!(split("sh -c 'echo").unwrap_err().contains("single quote"));
        assert!(split("sh -c \"echo").unwrap_err().contains("double quote"));
        assert!(split("echo \\").unwrap_err().contains("backslash"));
    }
}
