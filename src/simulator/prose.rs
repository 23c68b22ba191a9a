//! Made-up text about a prompt: a few sentences built from the prompt's own words, so an
//! answer reads like one and says what it answers, without any model behind it.

use super::rng::Rng;

/// Of a prompt, only this many characters are read for words (a huge prompt costs no more).
const READ_CHARS: usize = 4000;
/// Words kept from a prompt.
const MAX_WORDS: usize = 24;
/// Said of a prompt with no word of its own.
const FALLBACK_WORDS: &[&str] = &["your request", "the details", "the next step"];

/// Words too common to say what a prompt is about.
const STOPWORDS: &[&str] = &[
    "about", "after", "again", "all", "also", "and", "any", "are", "because", "been", "before", "but", "can", "could",
    "did", "does", "doing", "each", "for", "from", "had", "has", "have", "her", "here", "him", "his", "how", "into",
    "its", "just", "may", "more", "most", "not", "now", "off", "once", "only", "other", "our", "out", "over", "own",
    "please", "same", "she", "should", "some", "such", "than", "that", "the", "their", "them", "then", "there",
    "these", "they", "this", "those", "through", "too", "under", "until", "very", "was", "way", "were", "what", "when",
    "where", "which", "while", "who", "why", "will", "with", "would", "you", "your", "yours",
];

const OPENERS: &[&str] = &[
    "Thanks for the question about {a}.",
    "Here is a short answer on {a} and {b}.",
    "Good question, this touches on {a}.",
    "Let's start with {a}.",
];
const MIDDLES: &[&str] = &[
    "In most cases, it depends on {a} and {b}.",
    "It is worth checking {a} before changing anything about {b}.",
    "A common approach is to start with {a} and then look at {b}.",
    "If something about {a} still looks wrong, compare it with {b}.",
    "{A} and {b} are closely related, so it helps to handle them together.",
    "The details of {a} matter more than {b} here.",
];
const CLOSERS: &[&str] = &[
    "Let me know if you need more detail on {a}.",
    "That should be enough to move forward with {a}.",
    "In short, focus on {a} before anything else.",
];

/// The words of `prompt` that say what it is about: lowercase, three letters or more, no
/// stopwords, each once, in order.
pub fn keywords(prompt: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let read: String = prompt.chars().take(READ_CHARS).collect();
    for word in read.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '\'')) {
        let word = word.trim_matches(|c: char| c == '-' || c == '\'').to_lowercase();
        let useful = word.chars().count() >= 3 && !STOPWORDS.contains(&word.as_str());
        if useful && !words.contains(&word) {
            words.push(word);
            if words.len() == MAX_WORDS {
                break;
            }
        }
    }
    words
}

/// A paragraph of three to five sentences about `words`.
pub fn paragraph(words: &[String], rng: &mut Rng) -> String {
    let middles = rng.between(1, 3);
    let mut sentences = vec![sentence(OPENERS, words, rng)];
    sentences.extend((0..middles).map(|_| sentence(MIDDLES, words, rng)));
    sentences.push(sentence(CLOSERS, words, rng));
    sentences.join(" ")
}

/// One sentence from one of `templates`, its `{a}`/`{A}`/`{b}` filled from `words`.
pub fn sentence(templates: &[&str], words: &[String], rng: &mut Rng) -> String {
    let template = rng.pick(templates).copied().unwrap_or("{A}.");
    let a = word(words, rng);
    let b = (0..4)
        .map(|_| word(words, rng))
        .find(|b| *b != a)
        .unwrap_or_else(|| FALLBACK_WORDS[2].to_owned());
    template
        .replace("{A}", &capitalize(&a))
        .replace("{a}", &a)
        .replace("{b}", &b)
}

/// One of `words`, or a stand-in phrase when there are none.
pub fn word(words: &[String], rng: &mut Rng) -> String {
    match rng.pick(words) {
        Some(word) => word.clone(),
        None => rng.pick(FALLBACK_WORDS).copied().unwrap_or_default().to_owned(),
    }
}

/// The first sentence of `prompt`, at most `max_words` words, without its final punctuation.
pub fn excerpt(prompt: &str, max_words: usize) -> String {
    let read: String = prompt.chars().take(READ_CHARS).collect();
    let first = read
        .split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .find(|s| s.chars().any(char::is_alphanumeric))
        .unwrap_or_default();
    let words: Vec<&str> = first.split_whitespace().take(max_words).collect();
    let text = words.join(" ");
    let text = text.trim_end_matches(['.', '!', '?', ',', ';', ':', ' ']);
    match text.is_empty() {
        true => capitalize(FALLBACK_WORDS[0]),
        false => capitalize(text),
    }
}

/// `text` with its first letter in upper case.
pub fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_the_prompts_own_words_without_the_common_ones() {
        let words = keywords("My invoice for October was charged twice, please refund one payment.");
        assert_eq!(
            words,
            ["invoice", "october", "charged", "twice", "refund", "one", "payment"]
        );
        assert!(keywords("a to of").is_empty());
        assert_eq!(keywords(&"word ".repeat(10_000)), ["word"]);
    }

    #[test]
    fn a_paragraph_has_three_to_five_sentences_of_the_prompts_words() {
        let words = keywords("The mobile app crashes every time I open the settings page.");
        for seed in 0..50u64 {
            let text = paragraph(&words, &mut Rng::new(seed));
            let sentences = text.matches(['.', ':']).count();
            assert!((3..=6).contains(&sentences), "{text}");
            assert!(words.iter().any(|w| text.contains(w.as_str())), "{text}");
        }
        let empty = paragraph(&[], &mut Rng::new(1));
        assert!(!empty.contains("{a}") && empty.len() > 20, "{empty}");
    }

    #[test]
    fn an_excerpt_is_the_first_sentence_cut_to_its_words() {
        assert_eq!(
            excerpt("my invoice was charged twice. Refund it!", 12),
            "My invoice was charged twice"
        );
        assert_eq!(excerpt("one two three four five", 3), "One two three");
        assert_eq!(excerpt("   ...  ", 3), "Your request");
        assert_eq!(excerpt("delete my data (GDPR).", 12), "Delete my data (GDPR)");
    }
}
