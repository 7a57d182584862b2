export default function Usage() {
  return (
    <main id="usage">
      <h1>Usage</h1>
      <p>Your generations of the month would be listed here.</p>
    </main>
  );
}
