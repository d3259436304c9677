//! The Responses event sequence of a streamed chat completion.

use super::{call_item, message_item, new_id, response_object, status_of, usage_of};
use crate::openai_wire::{ChatChunk, FinishReason, Usage};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One streamed function call being assembled.
#[derive(Debug)]
struct OpenCall {
    output_index: usize,
    item_id: String,
    call_id: String,
    name: String,
    arguments: String,
}

/// Turns a stream of chat chunks into the Responses event sequence:
/// `response.created`, `response.in_progress`, per output item
/// `response.output_item.added`, its deltas (`response.output_text.delta`,
/// `response.function_call_arguments.delta`) and `…done` events,
/// `response.output_item.done`, and `response.completed` with the usage.
#[derive(Debug)]
pub struct ChatToResponseEvents {
    id: String,
    model: String,
    created_at: i64,
    request: Value,
    sequence: u64,
    started: bool,
    /// The message item: its output index, id and text so far.
    text: Option<(usize, String, String)>,
    calls: BTreeMap<u32, OpenCall>,
    outputs: usize,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl ChatToResponseEvents {
    pub fn new(model: &str, request: Value) -> Self {
        Self {
            id: new_id("resp"),
            model: model.to_owned(),
            created_at: crate::openai_wire::unix_now(),
            request,
            sequence: 0,
            started: false,
            text: None,
            calls: BTreeMap::new(),
            outputs: 0,
            finish: None,
            usage: None,
        }
    }

    fn event(&mut self, kind: &str, mut data: Value) -> (String, Value) {
        if let Some(fields) = data.as_object_mut() {
            fields.insert("type".into(), Value::String(kind.to_owned()));
            fields.insert("sequence_number".into(), Value::from(self.sequence));
        }
        self.sequence += 1;
        (kind.to_owned(), data)
    }

    fn start(&mut self, out: &mut Vec<(String, Value)>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = response_object(
            &self.id,
            self.created_at,
            &self.model,
            "in_progress",
            vec![],
            None,
            &self.request,
        );
        let e = self.event("response.created", json!({"response": r.clone()}));
        out.push(e);
        let e = self.event("response.in_progress", json!({"response": r}));
        out.push(e);
    }

    /// The events one chunk adds.
    pub fn push(&mut self, chunk: &ChatChunk) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        self.start(&mut out);
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        for choice in &chunk.choices {
            if let Some(text) = choice.delta.content.as_deref().filter(|t| !t.is_empty()) {
                if self.text.is_none() {
                    let (index, id) = (self.outputs, new_id("msg"));
                    self.outputs += 1;
                    let item = json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
                    let e = self.event(
                        "response.output_item.added",
                        json!({"output_index": index, "item": item}),
                    );
                    out.push(e);
                    let e = self.event("response.content_part.added", json!({"item_id": id, "output_index": index,
                        "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}));
                    out.push(e);
                    self.text = Some((index, id, String::new()));
                }
                let (index, id) = match &mut self.text {
                    Some((index, id, so_far)) => {
                        so_far.push_str(text);
                        (*index, id.clone())
                    }
                    None => continue,
                };
                let e = self.event(
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": index,
                    "content_index": 0, "delta": text, "logprobs": []}),
                );
                out.push(e);
            }
            for call in choice.delta.tool_calls.iter().flatten() {
                let key = call.index.unwrap_or(0);
                if !self.calls.contains_key(&key) {
                    let open = OpenCall {
                        output_index: self.outputs,
                        item_id: new_id("fc"),
                        call_id: call.id.clone().unwrap_or_else(|| new_id("call")),
                        name: call.function.name.clone().unwrap_or_default(),
                        arguments: String::new(),
                    };
                    self.outputs += 1;
                    let item =
                        call_item(&open.item_id, &open.call_id, &open.name, "", "in_progress");
                    let e = self.event(
                        "response.output_item.added",
                        json!({"output_index": open.output_index, "item": item}),
                    );
                    out.push(e);
                    self.calls.insert(key, open);
                }
                let piece = &call.function.arguments;
                if piece.is_empty() {
                    continue;
                }
                let (item_id, index) = match self.calls.get_mut(&key) {
                    Some(open) => {
                        open.arguments.push_str(piece);
                        (open.item_id.clone(), open.output_index)
                    }
                    None => continue,
                };
                let e = self.event(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": index, "delta": piece}),
                );
                out.push(e);
            }
            if let Some(f) = &choice.finish_reason {
                self.finish = Some(f.clone());
            }
        }
        out
    }

    /// The closing events: every item done, then `response.completed` (or
    /// `response.incomplete` when the output limit cut it short).
    pub fn finish(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        self.start(&mut out);
        let mut items: Vec<(usize, Value)> = Vec::new();
        if let Some((index, id, text)) = self.text.take() {
            let e = self.event(
                "response.output_text.done",
                json!({"item_id": id, "output_index": index,
                "content_index": 0, "text": text, "logprobs": []}),
            );
            out.push(e);
            let e = self.event("response.content_part.done", json!({"item_id": id, "output_index": index,
                "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": []}}));
            out.push(e);
            let item = message_item(&id, &text, "completed");
            let e = self.event(
                "response.output_item.done",
                json!({"output_index": index, "item": item.clone()}),
            );
            out.push(e);
            items.push((index, item));
        }
        let calls = std::mem::take(&mut self.calls);
        for open in calls.into_values() {
            let e = self.event(
                "response.function_call_arguments.done",
                json!({"item_id": open.item_id,
                "output_index": open.output_index, "arguments": open.arguments}),
            );
            out.push(e);
            let item = call_item(
                &open.item_id,
                &open.call_id,
                &open.name,
                &open.arguments,
                "completed",
            );
            let e = self.event(
                "response.output_item.done",
                json!({"output_index": open.output_index, "item": item.clone()}),
            );
            out.push(e);
            items.push((open.output_index, item));
        }
        items.sort_by_key(|(i, _)| *i);
        let status = status_of(self.finish.as_ref());
        let r = response_object(
            &self.id,
            self.created_at,
            &self.model,
            status,
            items.into_iter().map(|(_, v)| v).collect(),
            Some(usage_of(self.usage.as_ref())),
            &self.request,
        );
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        let e = self.event(kind, json!({"response": r}));
        out.push(e);
        out
    }

    /// An error event ending the stream.
    pub fn error(&mut self, code: &str, message: &str) -> (String, Value) {
        self.event(
            "error",
            json!({"code": code, "message": message, "param": null}),
        )
    }
}
