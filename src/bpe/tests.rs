use super::*;

/// Texts that take each branch of both patterns: contractions, letter runs with and without
/// capitals, digit runs, punctuation, whitespace runs before text and at the end, newlines,
/// scripts without spaces, emoji (four-byte characters split across tokens), and bytes no
/// token holds whole.
fn texts() -> Vec<String> {
    let mut texts: Vec<String> = [
        "",
        "Hello, world!",
        "It's 2026; they'll say we've done what I'd've DONE'S.",
        "   leading spaces and trailing   ",
        "tabs\tand\nnewlines\r\n\r\n  \n mixed \n\n\n",
        "1234567890 3.14159 -42 1e10 0x7fff",
        "fn main() { println!(\"{}\", x.iter().map(|v| v * 2).sum::<u64>()); }",
        "Ünïcödé naïve café — “quotes” ‘single’ … «guillemets»",
        "中文文本没有空格分隔，日本語のテキストも。한국어 문장입니다.",
        "emoji 🤖🚀👩‍👩‍👧‍👦 and flags 🇺🇳🇫🇷",
        "CamelCaseIdentifiersLikeThisOne and snake_case_ones and SHOUTING",
        "https://example.com/path/to/resource?query=value&other=1#frag",
        "{\"custom_id\":\"req-1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\"}",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "ŀ̷̡̛̛̜̫͉̼̻͇̞̺̟̙̮͗̒̈́̏͗͋̾̽̈́̆̚͝ͅz̸̨̛̗̞̹̰̲̗̪̠̱̮̟̥̈́̂̀̓̈́̏͑͗̕͠a̴̡̟͖͓̟̬̠͇̯̦̔̏̊̃̾͑́̇̈́̂̋͒̆l̶̢̡̰̣̜͙̼̪̹̬̙̓̀̀̀̈́̀̐̉̽̈́̈́̌̚g̵̨̛̗̳͚̱̞̘͔̱͍͑͌̓͊́͛̓̿̎̈́̽͠o̷",
        "\u{0}\u{1}\u{7f}\u{80}\u{ffff}\u{10ffff}",
    ]
    .map(String::from)
    .to_vec();
    // A few thousand characters drawn from all of the above, so pieces meet in new ways.
    let pool: Vec<char> = texts.concat().chars().collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..8 {
        let text = (0..4000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                pool[state as usize % pool.len()]
            })
            .collect();
        texts.push(text);
    }
    texts
}

#[test]
fn counts_are_tiktokens_on_both_encodings() {
    let encodings = [
        (&O200K_BASE, tiktoken_rs::o200k_base_singleton()),
        (&CL100K_BASE, tiktoken_rs::cl100k_base_singleton()),
    ];
    for (ours, theirs) in encodings {
        for text in texts() {
            let tokens = theirs.encode_ordinary(&text);
            assert_eq!(ours.count(&text), tokens.len() as u64, "{} on {text:?}", ours.name());
            for max in [0, 1, 2, 7, tokens.len() / 2, tokens.len(), tokens.len() + 3] {
                let prefix = theirs.decode_bytes(&tokens[..max.min(tokens.len())]).expect("decodes");
                assert_eq!(
                    ours.prefix_len(&text, max as u64),
                    prefix.len(),
                    "{} on {text:?} to {max}",
                    ours.name()
                );
            }
        }
    }
}

#[test]
fn every_token_is_found_at_its_rank_and_nothing_else_is() {
    for (ours, tokens) in [(&O200K_BASE, 199_998), (&CL100K_BASE, 100_256)] {
        assert_eq!(ours.ends.len() / 4, tokens, "{}", ours.name());
        for rank in (0..tokens as u32).step_by(97) {
            assert_eq!(ours.rank(ours.token(rank)), Some(rank), "{} rank {rank}", ours.name());
        }
        assert_eq!(ours.rank(b"no token is this long a string of bytes"), None);
        assert_eq!(ours.rank(b""), None);
    }
}

#[test]
fn model_families_have_their_encodings() {
    assert_eq!(for_model("gpt-4o-mini").map(Encoding::name), Some("o200k_base"));
    assert_eq!(for_model("gpt-5").map(Encoding::name), Some("o200k_base"));
    assert_eq!(for_model("gpt-4-turbo").map(Encoding::name), Some("cl100k_base"));
    assert_eq!(
        for_model("text-embedding-3-small").map(Encoding::name),
        Some("cl100k_base")
    );
    assert_eq!(for_model("llama-3.1-8b").map(Encoding::name), None);
}

/// Lowercase letters in no order, so the pieces are words no table holds whole.
fn word(len: usize) -> String {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect()
}

#[test]
fn one_long_word_merges_as_tiktoken_does_and_a_hostile_one_is_counted_at_all() {
    let word_8k = word(8 << 10);
    let theirs = tiktoken_rs::o200k_base_singleton().encode_ordinary(&word_8k).len() as u64;
    assert_eq!(O200K_BASE.count(&word_8k), theirs);
    // A sampled line may be 2 MiB: merging by scanning for the lowest pair, as tiktoken-rs
    // does, would take hours on one word that long; a few seconds here, unoptimised.
    let word_2m = word(2 << 20);
    let tokens = O200K_BASE.count(&word_2m);
    assert!(
        (word_2m.len() as u64 / 8..word_2m.len() as u64).contains(&tokens),
        "{tokens}"
    );
}

/// fancy-regex gives up on a whitespace run this long (its backtracking limit), where
/// tiktoken-rs panics: the text from there counts a token per four bytes, more than its tokens.
#[test]
fn a_run_the_pattern_gives_up_on_counts_a_token_per_four_bytes() {
    let spaces = " ".repeat(3 << 20) + "x";
    assert_eq!(O200K_BASE.count(&spaces), (spaces.len() as u64).div_ceil(4));
}
