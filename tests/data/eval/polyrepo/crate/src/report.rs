use crate::counter::{count_words, Counter};

pub fn report(text: &str, n: usize) -> String {
    let counter: Counter = count_words(text);
    let lines: Vec<String> = counter
        .most_common(n)
        .into_iter()
        .map(|(word, count)| format!("{word}: {count}"))
        .collect();
    lines.join("\n")
}
