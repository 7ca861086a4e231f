import { randomBytes } from "node:crypto";
import { type NatsPermissions, rolePermissions } from "@longshot/contracts";

/**
 * NATS users of an embedded cluster, by the name of the process that uses them: `admin` (the CLI: creates the
 * topology, reads everything), `submitter` (a tool that submits and follows runs), and one per service.
 */
export const CLUSTER_ROLES = [
  "admin",
  "submitter",
  "planner",
  "subplanner",
  "dispatcher",
  "merger",
  "reconciler",
  "llm-gateway",
  "monitor",
] as const;
export type ClusterRole = (typeof CLUSTER_ROLES)[number];

/** One generated user. */
export interface ClusterUser {
  user: string;
  pass: string;
  /** Subject permissions; absent = every subject (admin). */
  permissions?: NatsPermissions;
}

/** The permissions of a cluster role: `admin` has every subject, the others their contract role's. */
export function clusterPermissions(role: ClusterRole): NatsPermissions | undefined {
  if (role === "admin") return undefined;
  return rolePermissions(role === "llm-gateway" ? "gateway" : role);
}

/**
 * Fresh credentials for every role (32 random bytes of password each, generated per cluster start and handed to
 * each process only through its environment) with the permissions `permissionsOf` gives (none = every subject;
 * default {@link clusterPermissions}: least privilege).
 */
export function clusterUsers(
  permissionsOf: (role: ClusterRole) => NatsPermissions | undefined = clusterPermissions,
): Record<ClusterRole, ClusterUser> {
  const out = {} as Record<ClusterRole, ClusterUser>;
  for (const role of CLUSTER_ROLES) {
    const permissions = permissionsOf(role);
    out[role] = {
      user: role === "llm-gateway" ? "gateway" : role,
      pass: randomBytes(32).toString("base64url"),
      ...(permissions ? { permissions } : {}),
    };
  }
  return out;
}
