/**
 * The store's answers to tool steps awaiting approval: `POST models/message/<step id>/approve/`
 * with `{"approved": true|false, "reason"?: "..."}` (docs/protocol.md). While the answer is on its
 * way the step shows `answering`; the row the server answers with replaces the step's. A refusal
 * (409 `approval_already_answered`: answered in another tab or expired; 404: not the caller's) is
 * thrown as the SDK's typed error, shown in `state.error`, and the step's row is read again so it
 * shows what it is now.
 */

import { BuiltinModel, ErrorCode } from "../constants.js";
import { toClientError, UsageError } from "../errors.js";
import type { MessageRow, Normalized, Pk } from "../types.js";
import type { StoreHost } from "./host.js";
import { PLACEHOLDER_PREFIX } from "./reducer.js";

export interface ApprovalAnswer {
  approved: boolean;
  reason?: string;
}

export async function answerApproval(host: StoreHost, stepId: string, answer: ApprovalAnswer): Promise<MessageRow> {
  if (typeof stepId !== "string" || !stepId) {
    throw new UsageError("approve() and reject() need the step's id (`step.id` of a tool step).", { code: ErrorCode.NOT_A_TOOL_STEP, field: "stepId" });
  }
  if (stepId.startsWith(PLACEHOLDER_PREFIX)) {
    throw new UsageError("This tool call has no row yet (the model is still writing it): answer it once it awaits approval.", {
      code: ErrorCode.NOT_AWAITING_APPROVAL,
      field: "stepId",
    });
  }
  if (answer.reason !== undefined && typeof answer.reason !== "string") {
    throw new UsageError("reject()'s reason must be a string.", { code: ErrorCode.INVALID, field: "reason" });
  }
  const body: Record<string, unknown> = { approved: answer.approved };
  if (answer.reason !== undefined) body.reason = answer.reason;
  host.dispatch({ type: "answerStarted", stepId });
  try {
    const reply = await host.deps.transport.request<unknown>("POST", `models/${BuiltinModel.MESSAGE}/${encodeURIComponent(stepId)}/approve/`, { body });
    const row = rowOf(reply) ?? (await host.deps.messages.get(stepId));
    host.dispatch({ type: "answerEnded", stepId, row });
    return row;
  } catch (error) {
    const wrapped = toClientError(error);
    host.dispatch({ type: "answerEnded", stepId, row: null, error: wrapped });
    throw wrapped;
  }
}

/** The message row of a row action's answer: the bridge's normalized form, or a plain row. */
export function rowOf(reply: unknown): MessageRow | null {
  if (!reply || typeof reply !== "object") return null;
  const normalized = reply as Partial<Normalized<Pk>>;
  const row = normalized.included?.[BuiltinModel.MESSAGE]?.[String(normalized.data)];
  if (row) return row as MessageRow;
  const plain = reply as Partial<MessageRow>;
  return typeof plain.id === "string" && typeof plain.message_type === "string" ? (plain as MessageRow) : null;
}
