import { defineConfig } from "vitest/config";

// React's automatic JSX runtime through Vite's own esbuild: no plugin needed.
export default defineConfig({
  esbuild: { jsx: "automatic" },
  test: { environment: "node" },
});
