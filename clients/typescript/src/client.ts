// A typed todo-api client: openapi-fetch over the types openapi-typescript generates from
// /openapi.json (src/api.ts, `npm run generate`). This is all the hand-written code a frontend
// needs; every path, parameter, body and response below is checked by tsc against the document.
import createClient, { type Client } from "openapi-fetch";

import type { components, paths } from "./api.js";

export type Task = components["schemas"]["Task"];
export type Problem = components["schemas"]["Problem"];
export type ListQuery = NonNullable<paths["/api/tasks"]["get"]["parameters"]["query"]>;
export type TodoClient = Client<paths>;

/** A client for `baseUrl`, sending `token` (a Better Auth JWT) as `Authorization: Bearer`. */
export function createTodoClient(baseUrl: string, token?: string): TodoClient {
  return createClient<paths>({
    baseUrl,
    headers: token === undefined ? {} : { Authorization: `Bearer ${token}` },
  });
}

/** An error response of the API: its status and problem+json body. */
export class ProblemError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    super(`${status} ${problem.code}: ${problem.detail}`);
  }
}

/** The `cursor` in a list response's `Link: <…>; rel="next"`; undefined on the last page. */
export function nextCursor(response: Response): string | undefined {
  const target = response.headers.get("Link")?.match(/<([^>]*)>;\s*rel="next"/)?.[1];
  if (target === undefined) return undefined;
  // `Link` is a relative reference (path and query); any base resolves it.
  return new URL(target, "http://base.invalid").searchParams.get("cursor") ?? undefined;
}

/** Every task that matches `query`, page by page, following `Link: rel="next"`. */
export async function listAllTasks(client: TodoClient, query: ListQuery = {}): Promise<Task[]> {
  const tasks: Task[] = [];
  let cursor: string | undefined;
  do {
    const { data, error, response } = await client.GET("/api/tasks", {
      params: { query: { ...query, cursor } },
    });
    if (error !== undefined) throw new ProblemError(response.status, error);
    tasks.push(...data);
    cursor = nextCursor(response);
  } while (cursor !== undefined);
  return tasks;
}
