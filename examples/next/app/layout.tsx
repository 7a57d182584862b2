import type { Metadata } from "next";
import Link from "next/link";
import type { ReactNode } from "react";
import "quota-widget/quota-widget.css";
import "./app.css";

export const metadata: Metadata = { title: "Generate · quota-widget with Next.js", icons: "data:," };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>
        <nav>
          <Link href="/">Generate</Link>
          <Link href="/usage">Usage</Link>
        </nav>
        {children}
      </body>
    </html>
  );
}
