import { renderToString } from "react-dom/server";
import { describe, expect, it } from "vitest";
import { App } from "./App";

describe("App", () => {
  it("greets with the app's name", () => {
    expect(renderToString(<App name="payments-api" />)).toContain(
      "Hello from payments-api",
    );
  });
});
