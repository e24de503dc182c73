use std::collections::HashMap;

/// Counts how often each word occurs.
pub struct Counter {
    counts: HashMap<String, usize>,
}

impl Counter {
    pub fn new() -> Self {
        Counter { counts: HashMap::new() }
    }

    pub fn add(&mut self, word: &str) {
        *self.counts.entry(word.to_lowercase()).or_insert(0) += 1;
    }

    pub fn most_common(&self, n: usize) -> Vec<(String, usize)> {
        let mut pairs: Vec<(String, usize)> = self.counts.iter().map(|(w, c)| (w.clone(), *c)).collect();
        pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        pairs.truncate(n);
        pairs
    }
}

pub fn count_words(text: &str) -> Counter {
    let mut counter = Counter::new();
    for word in text.split_whitespace() {
        counter.add(word);
    }
    counter
}
