use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::super::schema_instance::tests::check;
use super::super::tokens::counter;
use super::*;

const CHAT: &str = "/v1/chat/completions";

fn chat_body(model: &str, user: &str) -> Value {
    json!({"model": model, "messages": [
        {"role": "system", "content": "Classify the support ticket."},
        {"role": "user", "content": user},
    ]})
}

fn content(answer: &Answer) -> &str {
    answer.body["choices"][0]["message"]["content"].as_str().unwrap()
}

/// The quickstart's kind of schema: a category, a priority and a summary.
fn ticket_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": ["billing", "bug", "feature", "account", "other"]},
            "priority": {"type": "string", "enum": ["low", "medium", "high"]},
            "summary": {"type": "string", "description": "One sentence"},
        },
        "required": ["category", "priority", "summary"],
        "additionalProperties": false,
    })
}

fn with_schema(mut body: Value, schema: Value) -> Value {
    body["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "t", "strict": true, "schema": schema}});
    body
}

#[test]
fn chat_answers_are_deterministic_sentences_about_the_last_user_message() {
    let body = json!({"model": "m1", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "bananas"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "refunds for annual subscriptions"}]},
    ]});
    let a = answer(CHAT, &body).unwrap();
    assert_eq!(a, answer(CHAT, &body).unwrap());
    assert_eq!(a.body["model"], "m1");
    assert_eq!(a.body["object"], "chat.completion");
    assert_eq!(a.body["choices"][0]["finish_reason"], "stop");
    let text = content(&a);
    assert!(
        ["refunds", "annual", "subscriptions"].iter().any(|w| text.contains(w)),
        "{text}"
    );
    assert!(!text.contains("bananas"), "{text}");
    assert!(text.ends_with('.') && text.matches(". ").count() >= 2, "{text}");
    assert_eq!(a.body["usage"]["total_tokens"], a.input_tokens + a.output_tokens);
    assert!((10..=150).contains(&a.output_tokens), "{}", a.output_tokens);
    let other = answer(CHAT, &chat_body("m1", "the export button does nothing")).unwrap();
    assert_ne!(content(&other), text);
}

#[test]
fn responses_and_completions_have_text_and_usage() {
    let r = answer(
        "/v1/responses",
        &json!({"model": "m", "input": "hello there, general kenobi"}),
    )
    .unwrap();
    let text = r.body["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("hello") || text.contains("general") || text.contains("kenobi"),
        "{text}"
    );
    assert_eq!(
        (&r.body["status"], &r.body["incomplete_details"]),
        (&json!("completed"), &Value::Null)
    );
    assert_eq!(r.body["usage"]["total_tokens"], r.input_tokens + r.output_tokens);
    let c = answer(
        "/v1/completions",
        &json!({"model": "m", "prompt": "say something about whales"}),
    )
    .unwrap();
    assert_eq!(c.body["object"], "text_completion");
    assert!(c.body["choices"][0]["text"].as_str().unwrap().contains("whales"));
    assert_eq!(c.body["choices"][0]["finish_reason"], "stop");
}

#[test]
fn text_is_cut_at_the_requests_output_limit_in_usage_tokens() {
    for model in ["gpt-4o-mini", "gpt-4", "llama-3"] {
        let count = |text: &str| counter(model).count(text);
        let mut body = chat_body(model, "Why is the sky blue at noon and red at dusk?");
        let free = answer(CHAT, &body).unwrap();
        assert!(count(content(&free)) > 12, "{model}");
        body["max_tokens"] = json!(7);
        let cut = answer(CHAT, &body).unwrap();
        assert_eq!(cut.body["choices"][0]["finish_reason"], "length", "{model}");
        assert_eq!(cut.body["usage"]["completion_tokens"], 7, "{model}");
        assert!(count(content(&cut)) <= 7, "{model}: {}", content(&cut));
        assert!(content(&free).starts_with(content(&cut)), "{model}: {}", content(&cut));
        body["max_completion_tokens"] = json!(3);
        let tighter = answer(CHAT, &body).unwrap();
        assert_eq!(tighter.output_tokens, 3, "max_completion_tokens wins over max_tokens");
        body["max_completion_tokens"] = json!(10_000);
        let roomy = answer(CHAT, &body).unwrap();
        assert_eq!(roomy.body["choices"][0]["finish_reason"], "stop", "{model}");
        assert_eq!(roomy.output_tokens, free.output_tokens);
    }
}

#[test]
fn reasoning_counts_against_the_limit_and_responses_become_incomplete() {
    let mut body = chat_body("o3-mini", "Explain the water cycle to a child.");
    body["max_completion_tokens"] = json!(12);
    let o3 = answer(CHAT, &body).unwrap();
    let usage = &o3.body["usage"];
    assert_eq!(o3.body["choices"][0]["finish_reason"], "length");
    assert_eq!(usage["completion_tokens"], 12, "{usage}");
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 8, "{usage}");
    let limited =
        json!({"model": "gpt-4.1-mini", "input": "Tell me a long story about dragons.", "max_output_tokens": 5});
    let r = answer("/v1/responses", &limited).unwrap();
    assert_eq!(r.body["status"], "incomplete");
    assert_eq!(r.body["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(r.body["output"][0]["status"], "incomplete");
    assert_eq!(r.output_tokens, 5);
    let c = answer(
        "/v1/completions",
        &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon", "max_tokens": 4}),
    )
    .unwrap();
    assert_eq!(
        (c.output_tokens, &c.body["choices"][0]["finish_reason"]),
        (4, &json!("length"))
    );
}

#[test]
fn json_schema_answers_are_instances_of_the_schema_picked_from_the_ticket() {
    let tickets = [
        (
            "My invoice for October was charged twice, please refund one payment.",
            "billing",
        ),
        ("The mobile app crashes every time I open the settings page.", "bug"),
        (
            "I can't log in since the password reset email never arrives.",
            "account",
        ),
        ("Feature request: dark mode for the web editor, please!", "feature"),
    ];
    for (ticket, expected) in tickets {
        let body = with_schema(chat_body("gpt-4o-mini", ticket), ticket_schema());
        let a = answer(CHAT, &body).unwrap();
        assert_eq!(a, answer(CHAT, &body).unwrap(), "deterministic");
        let instance: Value = serde_json::from_str(content(&a)).unwrap();
        check(&instance, &ticket_schema()).unwrap_or_else(|e| panic!("{instance}: {e}"));
        assert_eq!(instance["category"], expected, "{ticket}: {instance}");
        let summary = instance["summary"].as_str().unwrap();
        assert!(
            ticket.to_lowercase().starts_with(&summary.to_lowercase()[..10]),
            "{summary}"
        );
        assert_eq!(a.body["choices"][0]["finish_reason"], "stop");
    }
}

#[test]
fn different_tickets_get_different_but_stable_categories() {
    let categories: BTreeSet<String> = (0..40)
        .map(|i| {
            let body = with_schema(
                chat_body("gpt-4o-mini", &format!("Ticket {i}: zorp {i} quux")),
                ticket_schema(),
            );
            let a = answer(CHAT, &body).unwrap();
            let instance: Value = serde_json::from_str(content(&a)).unwrap();
            instance["category"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(categories.len() >= 4, "{categories:?}");
}

#[test]
fn the_responses_api_text_format_and_json_object_are_answered_in_json() {
    let body = json!({"model": "gpt-4o", "input": "The search page takes 30 seconds to load.",
        "text": {"format": {"type": "json_schema", "name": "t", "schema": ticket_schema()}}});
    let r = answer("/v1/responses", &body).unwrap();
    let text = r.body["output"][0]["content"][0]["text"].as_str().unwrap();
    let instance: Value = serde_json::from_str(text).unwrap();
    check(&instance, &ticket_schema()).unwrap();
    assert_eq!(instance["category"], "bug", "{instance}");

    let mut object = chat_body("gpt-4o-mini", "Name a colour");
    object["response_format"] = json!({"type": "json_object"});
    let a = answer(CHAT, &object).unwrap();
    let value: Value = serde_json::from_str(content(&a)).unwrap();
    assert!(value["answer"].as_str().is_some_and(|s| !s.is_empty()), "{value}");
    let responses_object = json!({"model": "m", "input": "hi", "text": {"format": {"type": "json_object"}}});
    let r = answer("/v1/responses", &responses_object).unwrap();
    let text = r.body["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(serde_json::from_str::<Value>(text).unwrap().is_object());
}

#[test]
fn input_tokens_are_what_the_cost_estimate_counts() {
    let lines = [
        (
            CHAT,
            with_schema(chat_body("gpt-4o-mini", "My invoice is wrong"), ticket_schema()),
        ),
        (CHAT, chat_body("gpt-4", "Hello there")),
        (
            "/v1/responses",
            json!({"model": "gpt-5-mini", "instructions": "be brief", "input": "hi"}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["Hello world", [1, 2, 3]]}),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon a time"}),
        ),
    ];
    for (endpoint, body) in lines {
        let line = json!({"custom_id": "a", "method": "POST", "url": endpoint, "body": body}).to_string();
        let report = crate::jsonl::validate_bytes(line.as_bytes(), endpoint, crate::jsonl::Limits::default());
        let estimate = &report.summary.estimates[0];
        let answered = answer(endpoint, &body).unwrap();
        assert_eq!(answered.input_tokens, estimate.input_tokens, "{endpoint} {body}");
        assert_ne!(estimate.counted_by, "bytes/4");
    }
}

#[test]
fn shared_system_prompts_count_as_cached_and_reasoning_models_reason() {
    let chat = answer(CHAT, &chat_body("gpt-4o-mini", "My invoice is wrong")).unwrap();
    let usage = &chat.body["usage"];
    let cached = usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    assert!(cached > 0 && cached < chat.input_tokens, "{usage}");
    assert_eq!((chat.cached_tokens, chat.reasoning_tokens), (cached, 0));
    let o3 = answer(CHAT, &chat_body("o3-mini", "My invoice is wrong")).unwrap();
    let reasoning = o3.body["usage"]["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert_eq!(
        reasoning * 3,
        o3.output_tokens * 2,
        "reasoning is inside completion_tokens"
    );
    let response = answer(
        "/v1/responses",
        &json!({"model": "gpt-5-mini", "instructions": "be brief", "input": "hi"}),
    )
    .unwrap();
    let usage = &response.body["usage"];
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 2);
    assert!(usage["output_tokens_details"]["reasoning_tokens"].as_u64().unwrap() > 0);
    assert_eq!(usage["total_tokens"], response.input_tokens + response.output_tokens);
    let unknown = answer(
        "/v1/responses",
        &json!({"model": "m", "instructions": "be brief", "input": "hi"}),
    )
    .unwrap();
    assert_eq!(
        (unknown.input_tokens, unknown.cached_tokens),
        (3, 2),
        "a quarter of the characters"
    );
}

#[test]
fn missing_model_is_refused() {
    let err = answer(CHAT, &json!({"messages": []})).unwrap_err();
    assert_eq!(err.status, 400);
    assert_eq!(err.param.as_deref(), Some("model"));
}
