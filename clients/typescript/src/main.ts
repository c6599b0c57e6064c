// Runs the typed client against a live todo-api: TODO_API_URL (e.g. http://127.0.0.1:8000) and
// TODO_API_TOKEN (`todo-api token --user alice`). Exits non-zero at the first check that fails.
// backend/tests/clients/test_generated_clients.py builds (`tsc --strict`) and runs it in CI.
import assert from "node:assert/strict";

import { createTodoClient, listAllTasks, type TodoClient } from "./client.js";

const baseUrl = process.env.TODO_API_URL ?? "http://127.0.0.1:8000";
const token = process.env.TODO_API_TOKEN;
if (token === undefined) throw new Error("set TODO_API_TOKEN (todo-api token --user alice)");

const api = createTodoClient(baseUrl, token);
const marker = `ts-${Date.now()}`;
let checks = 0;
function passed(what: string): void {
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
}

// Who am I: the hackathon paths need the id.
const me = await api.GET("/api/users/me");
assert.ok(me.data, JSON.stringify(me.error));
const userId = me.data.id;
passed("GET /api/users/me");

// Create with only a title: `completed`, `description` and `due_date` are optional.
const first = await api.POST("/api/tasks", { body: { title: `${marker} first` } });
assert.equal(first.response.status, 201);
assert.ok(first.data);
assert.equal(first.data.completed, false);
assert.equal(first.data.description, null);
assert.equal(first.response.headers.get("Location"), `/api/tasks/${first.data.id}`);
assert.match(first.response.headers.get("ETag") ?? "", /^"\d+\.\d+"$/);
const id = first.data.id;
passed("POST /api/tasks with {title} only: 201, Location, ETag");

for (const n of [2, 3, 4, 5]) {
  const created = await api.POST("/api/{user_id}/tasks", {
    params: { path: { user_id: userId } },
    body: { title: `${marker} ${n}`, completed: n % 2 === 0, due_date: "2026-12-24" },
  });
  assert.equal(created.response.status, 201);
  assert.equal(created.response.headers.get("Location"), `/api/${userId}/tasks/${created.data?.id}`);
}
passed("POST /api/{user_id}/tasks (hackathon path) x4");

// List with filters, two per page, following Link: 3 pending tasks, sorted by title.
const pending = await listAllTasks(api, { status: "pending", q: marker, sort: "title", limit: 2 });
assert.deepEqual(
  pending.map((task) => task.title),
  [`${marker} 3`, `${marker} 5`, `${marker} first`],
);
passed("GET /api/tasks?status=pending&q=…&sort=title&limit=2, following Link to page 2");

const done = await api.GET("/api/{user_id}/tasks", {
  params: { path: { user_id: userId }, query: { status: "completed", q: marker } },
});
assert.deepEqual(done.data?.map((task) => task.title).sort(), [`${marker} 2`, `${marker} 4`]);
assert.equal(done.response.headers.get("Link"), null);
passed("GET /api/{user_id}/tasks?status=completed: one page, no Link");

const one = await api.GET("/api/tasks/{task_id}", { params: { path: { task_id: id } } });
assert.equal(one.data?.title, `${marker} first`);
const etag = one.response.headers.get("ETag");
assert.ok(etag);
passed("GET /api/tasks/{task_id}");

const replaced = await api.PUT("/api/tasks/{task_id}", {
  params: { path: { task_id: id }, header: { "If-Match": etag } },
  body: { title: `${marker} renamed`, description: "from PUT", due_date: "2027-01-02" },
});
assert.ok(replaced.data, JSON.stringify(replaced.error));
assert.deepEqual(
  [replaced.data.title, replaced.data.description, replaced.data.due_date, replaced.data.completed],
  [`${marker} renamed`, "from PUT", "2027-01-02", false],
);
passed("PUT /api/tasks/{task_id} with If-Match");

const stale = await api.PATCH("/api/tasks/{task_id}", {
  params: { path: { task_id: id }, header: { "If-Match": etag } },
  body: { title: "never written" },
});
assert.equal(stale.response.status, 412);
assert.equal(stale.error?.code, "precondition_failed");
passed("PATCH with a stale If-Match: 412 precondition_failed");

const cleared = await api.PATCH("/api/tasks/{task_id}", {
  params: { path: { task_id: id } },
  body: { description: null, due_date: null },
});
assert.deepEqual(
  [cleared.data?.title, cleared.data?.description, cleared.data?.due_date],
  [`${marker} renamed`, null, null],
);
passed("PATCH /api/tasks/{task_id} with nulls clears description and due_date");

const flipped = await api.PATCH("/api/tasks/{task_id}/complete", {
  params: { path: { task_id: id } },
});
assert.equal(flipped.data?.completed, true);
passed("PATCH /api/tasks/{task_id}/complete without a body flips completed");

const set = await api.PATCH("/api/tasks/{task_id}/complete", {
  params: { path: { task_id: id } },
  body: { completed: true },
});
assert.equal(set.data?.completed, true);
const unset = await api.PATCH("/api/{user_id}/tasks/{task_id}/complete", {
  params: { path: { user_id: userId, task_id: id } },
  body: { completed: false },
});
assert.equal(unset.data?.completed, false);
passed("PATCH …/complete with {completed} sets it (both path styles)");

const deleted = await api.DELETE("/api/tasks/{task_id}", { params: { path: { task_id: id } } });
assert.equal(deleted.response.status, 204);
const gone = await api.GET("/api/tasks/{task_id}", { params: { path: { task_id: id } } });
assert.equal(gone.response.status, 404);
assert.equal(gone.error?.code, "not_found");
passed("DELETE /api/tasks/{task_id}: 204, then 404 not_found");

// Errors are problem+json bodies typed as Problem.
const anonymous = await createTodoClient(baseUrl).GET("/api/tasks");
assert.equal(anonymous.response.status, 401);
assert.equal(anonymous.error?.code, "missing_token");
assert.equal(anonymous.error?.request_id, anonymous.response.headers.get("X-Request-ID"));
assert.match(anonymous.response.headers.get("WWW-Authenticate") ?? "", /^Bearer realm="todo-api"/);
passed("no token: 401 missing_token, WWW-Authenticate, request_id");

const invalid = await api.POST("/api/tasks", { body: { title: "   " } });
assert.equal(invalid.response.status, 422);
assert.equal(invalid.error?.code, "validation_error");
assert.deepEqual(invalid.error?.errors?.[0]?.loc, ["body", "title"]);
passed("blank title: 422 validation_error with errors[].loc");

const foreign = await api.GET("/api/{user_id}/tasks", {
  params: { path: { user_id: `${userId}-someone-else` } },
});
assert.equal(foreign.response.status, 403);
assert.equal(foreign.error?.code, "forbidden");
passed("another user's hackathon path: 403 forbidden");

console.log(`typescript client: all ${checks} checks passed against ${baseUrl}`);

// Never called: tsc must refuse these, or the document has become too loose.
export function refusedByTheTypes(client: TodoClient): void {
  // @ts-expect-error a task needs a title
  void client.POST("/api/tasks", { body: {} });
  // @ts-expect-error `status` is one of all|pending|incomplete|completed
  void client.GET("/api/tasks", { params: { query: { status: "done" } } });
  // @ts-expect-error a title is never null
  void client.PATCH("/api/tasks/{task_id}", { params: { path: { task_id: 1 } }, body: { title: null } });
}
