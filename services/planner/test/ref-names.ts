/**
 * Branch names and whether `branchNameProblem` accepts them (`ok`), for the unit table and the check against
 * real git. `git` is what `git check-ref-format --branch` answers when it differs from `ok`; `why` is a
 * substring of the problem reported. Rules: `git help check-ref-format`.
 */
export interface RefNameCase {
  name: string;
  ok: boolean;
  git?: boolean;
  why?: string;
}

export const REF_NAME_CASES: readonly RefNameCase[] = [
  { name: "main", ok: true },
  { name: "feature/login", ok: true },
  { name: "release/v1.2.3", ok: true },
  { name: "a/b/c", ok: true },
  { name: "ünïcode-branch", ok: true },
  { name: "x.lock.y", ok: true },
  { name: "a@b", ok: true },
  { name: "a/-b", ok: true },
  { name: "a{b}", ok: true },
  { name: "", ok: false, why: "must not be empty" },
  { name: "-x", ok: false, why: "must not start with '-'" },
  { name: "-", ok: false, why: "must not start with '-'" },
  { name: "a..b", ok: false, why: "'..'" },
  { name: "a@{b", ok: false, why: "'@{'" },
  { name: "@{-1}", ok: false, why: "'@{'" },
  { name: "HEAD", ok: false, why: "must not be 'HEAD'" },
  // Rule 9 ("cannot be the single character @") is checked on refs/heads/@ by git, which passes; `@` alone
  // means HEAD in revision syntax, so it is refused as a base branch.
  { name: "@", ok: false, git: true, why: "must not be '@'" },
  { name: "a b", ok: false, why: "a space" },
  { name: "a\tb", ok: false, why: "control characters" },
  { name: "a\u007fb", ok: false, why: "control characters" },
  { name: "a~b", ok: false, why: "'~'" },
  { name: "a^b", ok: false, why: "'^'" },
  { name: "a:b", ok: false, why: "':'" },
  { name: "a?b", ok: false, why: "'?'" },
  { name: "a*b", ok: false, why: "'*'" },
  { name: "a[b", ok: false, why: "'['" },
  { name: "a\\b", ok: false, why: "'\\'" },
  { name: "a/", ok: false, why: "'/'" },
  { name: "/a", ok: false, why: "'/'" },
  { name: "a//b", ok: false, why: "'//'" },
  { name: "a.", ok: false, why: "end with '.'" },
  { name: ".a", ok: false, why: "start with '.'" },
  { name: "a/.b", ok: false, why: "start with '.'" },
  { name: "a.lock", ok: false, why: "'.lock'" },
  { name: "a/b.lock", ok: false, why: "'.lock'" },
  { name: "a.lock/b", ok: false, why: "'.lock'" },
  { name: "b".repeat(256), ok: false, git: true, why: "at most 255 bytes" },
];
