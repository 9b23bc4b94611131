export function App({ name }: { name: string }) {
  return (
    <main>
      <h1>{`Hello from ${name}`}</h1>
      <p>Made from Paved's web-app golden path.</p>
    </main>
  );
}
