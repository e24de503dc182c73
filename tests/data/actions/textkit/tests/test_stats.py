from textkit.stats import top_words, word_count


def test_word_count_counts_whitespace_separated_words():
    assert word_count("a b  c") == 3


def test_top_words_breaks_ties_alphabetically():
    assert top_words("b a b a c", n=2) == [("a", 2), ("b", 2)]
